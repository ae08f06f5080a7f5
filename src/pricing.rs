//! Pricing as operators manage it (issue 16 item 5: `/ops/pricing/*`, `kioskd ops
//! pricing ...`, the console's Pricing page): rate plans with their weekly grid and date
//! overrides, zones and the devices in them, member groups, packages, and grants. This
//! module holds the rules (what a valid grid, window, discount or name is; a plan still
//! in use is never deleted; a withdrawn package stays with whoever holds it) and, after
//! every change, reloads the coordinator's catalog and tells the other nodes to reload
//! theirs (the broker's `<namespace>:pricing` channel). Each node also reloads every
//! [`RELOAD_EVERY`] as a backstop for a lost notice. The audit row of a change is written
//! by the ops API's audit middleware (`http::audit`), which records every state-changing
//! `/ops/*` request, the CLI's and the console's included.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use kioskd_actors::catalog;
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::pricing::{MAX_RATE, RatePlan, SLOTS_PER_DAY, SLOTS_PER_WEEK, Window};

use crate::service_error::ServiceError;
use crate::services::Services;
use crate::store::{DevicePricingRow, GroupRow, PackageRow, UserPackageRow, WriteError, ZoneRow};

/// How often each node reloads its catalog even when no change was announced.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// The longest name of a plan, zone, group or package.
const NAME_MAX: usize = 64;
/// The most minutes a package may hold (a year).
const PACKAGE_MINUTES_MAX: i64 = 366 * 24 * 60;
/// The highest package price, in fen (100,000 yuan).
const PACKAGE_PRICE_MAX: i64 = 10_000_000;
/// The longest validity of a package, in days.
const PACKAGE_DAYS_MAX: i64 = 3660;
/// The most daily windows one package may have.
const WINDOWS_MAX: usize = 8;
/// The most zones one package may name.
const ZONES_MAX: usize = 64;

fn name_ok(what: &str, name: &str) -> Result<String, ServiceError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > NAME_MAX || n.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!(
            "{what} name must be 1-{NAME_MAX} printable characters"
        )));
    }
    Ok(n.to_string())
}

fn rates_ok(slots: &[i64], want: usize, what: &str) -> Result<(), ServiceError> {
    if slots.len() != want {
        return Err(ServiceError::invalid(format!(
            "{what} must have {want} half-hour rates (fen per minute), got {}",
            slots.len()
        )));
    }
    if let Some((i, r)) = slots
        .iter()
        .enumerate()
        .find(|(_, r)| !(0..=MAX_RATE).contains(*r))
    {
        return Err(ServiceError::invalid(format!(
            "{what}: rate {r} at slot {i} is not between 0 and {MAX_RATE} fen per minute"
        )));
    }
    Ok(())
}

fn min_charge_ok(m: i64) -> Result<(), ServiceError> {
    if (0..=MAX_RATE).contains(&m) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "min_charge must be between 0 and {MAX_RATE} fen"
        )))
    }
}

fn discount_ok(d: i64) -> Result<(), ServiceError> {
    if (0..=100).contains(&d) {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "discount_pct must be a whole percentage between 0 and 100",
        ))
    }
}

/// A local date `YYYY-MM-DD`.
pub fn parse_day(day: &str) -> Result<NaiveDate, ServiceError> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .filter(|d| day.len() == 10 && (2000..=2200).contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| ServiceError::invalid("day must be a date YYYY-MM-DD"))
}

/// Daily windows `HH:MM-HH:MM` (one may cross midnight; equal ends: all day).
pub fn parse_windows(ws: &[String]) -> Result<Vec<Window>, ServiceError> {
    if ws.len() > WINDOWS_MAX {
        return Err(ServiceError::invalid(format!(
            "at most {WINDOWS_MAX} windows"
        )));
    }
    ws.iter()
        .map(|w| {
            Window::parse(w.trim())
                .filter(|w| w.validate().is_ok())
                .ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "window {w:?} must be HH:MM-HH:MM, e.g. 22:00-08:00"
                    ))
                })
        })
        .collect()
}

fn store_err(e: WriteError, what: &str, exists: &str) -> ServiceError {
    match e {
        WriteError::NotFound => ServiceError::not_found(format!("no such {what}")),
        WriteError::Conflict => ServiceError::conflict(exists.to_string()),
        WriteError::Refused => ServiceError::invalid(format!("the database refused the {what}")),
        e => e.into(),
    }
}

async fn plan_exists(s: &Services, id: Option<i64>) -> Result<(), ServiceError> {
    if let Some(id) = id
        && !s.db.plans().await?.iter().any(|p| p.id == id)
    {
        return Err(ServiceError::not_found(format!("no such plan {id}")));
    }
    Ok(())
}

async fn zone_exists(s: &Services, id: Option<i64>) -> Result<(), ServiceError> {
    if let Some(id) = id
        && !s.db.zones().await?.iter().any(|z| z.id == id)
    {
        return Err(ServiceError::not_found(format!("no such zone {id}")));
    }
    Ok(())
}

/// Reloads this node's catalog from the database. False (logged) when it could not be
/// read: the node keeps pricing with the catalog it has until the next reload.
pub async fn reload(s: &Services) -> bool {
    match s.db.pricing_catalog(s.tz).await {
        Ok(c) => {
            s.coord.set_pricing(c);
            metrics::counter!(catalog::PRICING_RELOADS, "outcome" => "ok").increment(1);
            true
        }
        Err(e) => {
            metrics::counter!(catalog::PRICING_RELOADS, "outcome" => "error").increment(1);
            tracing::error!(error = %e, "reloading the pricing catalog failed");
            false
        }
    }
}

/// After a change: this node reloads now; the others are told to (best effort: a lost
/// notice is made good by their periodic reload).
async fn changed(s: &Services) {
    reload(s).await;
    if let Some(b) = &s.broker
        && let Err(e) = b.publish_pricing_changed().await
    {
        tracing::warn!(error = %e, "announcing a pricing change to the other nodes failed");
    }
}

/// Keeps this node's catalog current: reloads when `kick` is notified (another node
/// announced a change) and every `every` regardless. Runs until aborted.
pub async fn keep_current(s: Arc<Services>, kick: Arc<tokio::sync::Notify>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the catalog was just loaded at start.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = kick.notified() => {}
            _ = tick.tick() => {}
        }
        reload(&s).await;
    }
}

/// A plan as operators see it: the plan and what uses it.
#[derive(Debug, Clone)]
pub struct PlanView {
    /// The plan.
    pub plan: RatePlan,
    /// Zones, groups and devices on it.
    pub users: crate::store::PlanUsers,
}

/// Every plan, with what uses each.
pub async fn plans(s: &Services) -> Result<Vec<PlanView>, ServiceError> {
    let mut out = Vec::new();
    for plan in s.db.plans().await? {
        let users = s.db.plan_users(plan.id).await?;
        out.push(PlanView { plan, users });
    }
    Ok(out)
}

/// One plan.
pub async fn plan(s: &Services, id: i64) -> Result<PlanView, ServiceError> {
    let plan =
        s.db.plans()
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| ServiceError::not_found("no such plan"))?;
    let users = s.db.plan_users(id).await?;
    Ok(PlanView { plan, users })
}

/// Creates a plan: a name, the weekly grid (336 rates, Monday 00:00 first) and the
/// minimum charge. Returns its id.
pub async fn create_plan(
    s: &Services,
    name: &str,
    week: &[i64],
    min_charge: i64,
) -> Result<i64, ServiceError> {
    let name = name_ok("plan", name)?;
    rates_ok(week, SLOTS_PER_WEEK, "week")?;
    min_charge_ok(min_charge)?;
    let id =
        s.db.add_plan(&name, week, min_charge, s.coord.clock().now_ms())
            .await
            .map_err(|e| store_err(e, "plan", "a plan with that name exists"))?;
    changed(s).await;
    Ok(id)
}

/// Replaces a plan's weekly grid and minimum charge.
pub async fn set_grid(
    s: &Services,
    id: i64,
    week: &[i64],
    min_charge: i64,
) -> Result<(), ServiceError> {
    rates_ok(week, SLOTS_PER_WEEK, "week")?;
    min_charge_ok(min_charge)?;
    s.db.update_plan(id, week, min_charge, s.coord.clock().now_ms())
        .await
        .map_err(|e| store_err(e, "plan", "conflict"))?;
    changed(s).await;
    Ok(())
}

/// Sets (`Some`, 48 rates) or removes (`None`) a plan's own rates for a local date.
pub async fn set_day(
    s: &Services,
    id: i64,
    day: &str,
    slots: Option<&[i64]>,
) -> Result<NaiveDate, ServiceError> {
    let day = parse_day(day)?;
    if let Some(slots) = slots {
        rates_ok(slots, SLOTS_PER_DAY, "a day")?;
    }
    plan_exists(s, Some(id)).await?;
    s.db.set_plan_day(id, day, slots)
        .await
        .map_err(|e| store_err(e, "plan", "conflict"))?;
    changed(s).await;
    Ok(day)
}

/// Deletes a plan nothing uses; one still named by a zone, group or device is refused
/// (unassign it first), never removed from under them.
pub async fn delete_plan(s: &Services, id: i64) -> Result<(), ServiceError> {
    match s.db.delete_plan(id).await {
        Ok(()) => {}
        Err(WriteError::Refused) => {
            let u = s.db.plan_users(id).await?;
            return Err(ServiceError::conflict(format!(
                "the plan is in use ({} zones, {} groups, {} devices): assign them another plan or none first",
                u.zones, u.groups, u.devices
            )));
        }
        Err(e) => return Err(store_err(e, "plan", "conflict")),
    }
    changed(s).await;
    Ok(())
}

/// Every zone, and every device with its zone and own plan.
pub async fn zones(s: &Services) -> Result<(Vec<ZoneRow>, Vec<DevicePricingRow>), ServiceError> {
    Ok((s.db.zones().await?, s.db.device_pricing().await?))
}

/// Creates a zone (optionally on a plan). Returns its id.
pub async fn create_zone(
    s: &Services,
    name: &str,
    plan_id: Option<i64>,
) -> Result<i64, ServiceError> {
    let name = name_ok("zone", name)?;
    plan_exists(s, plan_id).await?;
    let id =
        s.db.add_zone(&name, plan_id, s.coord.clock().now_ms())
            .await
            .map_err(|e| store_err(e, "zone", "a zone with that name exists"))?;
    changed(s).await;
    Ok(id)
}

/// Puts a zone on a plan (`None`: its devices fall back to their flat price).
pub async fn set_zone_plan(
    s: &Services,
    id: i64,
    plan_id: Option<i64>,
) -> Result<(), ServiceError> {
    plan_exists(s, plan_id).await?;
    s.db.set_zone_plan(id, plan_id)
        .await
        .map_err(|e| store_err(e, "zone", "conflict"))?;
    changed(s).await;
    Ok(())
}

/// Puts a device in a zone and on a plan of its own (each `None` clears it). Returns the
/// normalised code.
pub async fn assign_device(
    s: &Services,
    raw_code: &str,
    zone_id: Option<i64>,
    plan_id: Option<i64>,
) -> Result<String, ServiceError> {
    let code =
        normalize_device_code(raw_code).ok_or_else(|| ServiceError::invalid("bad device code"))?;
    zone_exists(s, zone_id).await?;
    plan_exists(s, plan_id).await?;
    let dev = kioskd_actors::ports::Store::device_by_code(&s.db, &code)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such device"))?;
    s.db.assign_device(dev.id, zone_id, plan_id)
        .await
        .map_err(|e| store_err(e, "device", "conflict"))?;
    changed(s).await;
    Ok(code)
}

/// Every member group.
pub async fn groups(s: &Services) -> Result<Vec<GroupRow>, ServiceError> {
    Ok(s.db.groups().await?)
}

/// Creates a member group. Returns its id.
pub async fn create_group(
    s: &Services,
    name: &str,
    discount_pct: i64,
    plan_id: Option<i64>,
) -> Result<i64, ServiceError> {
    let name = name_ok("group", name)?;
    discount_ok(discount_pct)?;
    plan_exists(s, plan_id).await?;
    let id =
        s.db.add_group(&name, discount_pct, plan_id, s.coord.clock().now_ms())
            .await
            .map_err(|e| store_err(e, "group", "a group with that name exists"))?;
    changed(s).await;
    Ok(id)
}

/// Sets a group's discount and own plan.
pub async fn set_group(
    s: &Services,
    id: i64,
    discount_pct: i64,
    plan_id: Option<i64>,
) -> Result<(), ServiceError> {
    discount_ok(discount_pct)?;
    plan_exists(s, plan_id).await?;
    s.db.set_group(id, discount_pct, plan_id)
        .await
        .map_err(|e| store_err(e, "group", "conflict"))?;
    changed(s).await;
    Ok(())
}

/// Puts a user in a group (`None`: no group). Applies to sessions started afterwards.
pub async fn set_user_group(
    s: &Services,
    user_id: i64,
    group_id: Option<i64>,
) -> Result<(), ServiceError> {
    if let Some(g) = group_id
        && !s.db.groups().await?.iter().any(|x| x.id == g)
    {
        return Err(ServiceError::not_found(format!("no such group {g}")));
    }
    s.db.set_user_group(user_id, group_id)
        .await
        .map_err(|e| store_err(e, "user", "conflict"))?;
    Ok(())
}

/// A package as an operator asks for it (unvalidated).
#[derive(Debug, Clone)]
pub struct NewPackage {
    /// Name.
    pub name: String,
    /// Minutes of use.
    pub minutes: i64,
    /// Price in fen.
    pub price: i64,
    /// Zones where usable (empty: any device).
    pub zones: Vec<i64>,
    /// Daily windows `HH:MM-HH:MM` (empty: all day).
    pub windows: Vec<String>,
    /// Days of validity from the purchase.
    pub valid_days: i64,
}

/// Every package (on sale or withdrawn).
pub async fn packages(s: &Services) -> Result<Vec<PackageRow>, ServiceError> {
    Ok(s.db.packages().await?)
}

/// Puts a package on sale. Returns its id.
pub async fn create_package(s: &Services, p: NewPackage) -> Result<i64, ServiceError> {
    let name = name_ok("package", &p.name)?;
    if !(1..=PACKAGE_MINUTES_MAX).contains(&p.minutes) {
        return Err(ServiceError::invalid(format!(
            "minutes must be 1-{PACKAGE_MINUTES_MAX}"
        )));
    }
    if !(0..=PACKAGE_PRICE_MAX).contains(&p.price) {
        return Err(ServiceError::invalid(format!(
            "price must be 0-{PACKAGE_PRICE_MAX} fen"
        )));
    }
    if !(1..=PACKAGE_DAYS_MAX).contains(&p.valid_days) {
        return Err(ServiceError::invalid(format!(
            "valid_days must be 1-{PACKAGE_DAYS_MAX}"
        )));
    }
    if p.zones.len() > ZONES_MAX {
        return Err(ServiceError::invalid(format!("at most {ZONES_MAX} zones")));
    }
    let windows = parse_windows(&p.windows)?;
    let known = s.db.zones().await?;
    if let Some(z) = p.zones.iter().find(|z| !known.iter().any(|k| k.id == **z)) {
        return Err(ServiceError::not_found(format!("no such zone {z}")));
    }
    let mut zones = p.zones.clone();
    zones.sort_unstable();
    zones.dedup();
    let id =
        s.db.add_package(
            &name,
            p.minutes,
            p.price,
            &zones,
            &windows,
            p.valid_days,
            s.coord.clock().now_ms(),
        )
        .await
        .map_err(|e| store_err(e, "package", "a package with that name exists"))?;
    Ok(id)
}

/// Withdraws a package from sale (`false`) or puts it back (`true`). Users keep what
/// they hold of it.
pub async fn set_package_on_sale(s: &Services, id: i64, on_sale: bool) -> Result<(), ServiceError> {
    s.db.set_package_on_sale(id, on_sale)
        .await
        .map_err(|e| store_err(e, "package", "conflict"))
}

/// Gives a user a package on sale without payment. Returns the user package's id.
pub async fn grant_package(
    s: &Services,
    user_id: i64,
    package_id: i64,
) -> Result<i64, ServiceError> {
    if s.db.user_by_id(user_id).await?.is_none() {
        return Err(ServiceError::not_found("no such user"));
    }
    let id =
        s.db.grant_package(user_id, package_id, s.coord.clock().now_ms())
            .await?
            .ok_or_else(|| ServiceError::not_found("no such package on sale"))?;
    metrics::counter!(catalog::PACKAGES_SOLD, "source" => "operator").increment(1);
    Ok(id)
}

/// The packages a user holds with time left.
pub async fn user_packages(
    s: &Services,
    user_id: i64,
) -> Result<Vec<UserPackageRow>, ServiceError> {
    if s.db.user_by_id(user_id).await?.is_none() {
        return Err(ServiceError::not_found("no such user"));
    }
    Ok(s.db
        .user_packages(user_id, s.coord.clock().now_ms())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_checked_whole() {
        assert!(rates_ok(&vec![60; SLOTS_PER_WEEK], SLOTS_PER_WEEK, "week").is_ok());
        assert!(rates_ok(&vec![60; SLOTS_PER_WEEK - 1], SLOTS_PER_WEEK, "week").is_err());
        let mut w = vec![0; SLOTS_PER_WEEK];
        w[100] = -1;
        let e = rates_ok(&w, SLOTS_PER_WEEK, "week")
            .unwrap_err()
            .to_string();
        assert!(e.contains("slot 100"), "{e}");
        w[100] = MAX_RATE + 1;
        assert!(rates_ok(&w, SLOTS_PER_WEEK, "week").is_err());
        w[100] = MAX_RATE;
        assert!(rates_ok(&w, SLOTS_PER_WEEK, "week").is_ok());
    }

    #[test]
    fn names_days_windows_and_discounts() {
        assert_eq!(name_ok("zone", "  VR ").unwrap(), "VR");
        assert!(name_ok("zone", "  ").is_err());
        assert!(name_ok("zone", "a\nb").is_err());
        assert!(name_ok("zone", &"x".repeat(65)).is_err());
        assert!(parse_day("2026-10-01").is_ok());
        assert!(parse_day("2026-02-30").is_err());
        assert!(parse_day("2026-1-1").is_err());
        assert!(parse_day("1900-01-01").is_err());
        let w = parse_windows(&["22:00-08:00".into(), "12:00-13:30".into()]).unwrap();
        assert_eq!(w[0].to_string(), "22:00-08:00");
        assert!(parse_windows(&["25:00-08:00".into()]).is_err());
        assert!(parse_windows(&["22:00".into()]).is_err());
        assert!(parse_windows(&vec!["00:00-01:00".to_string(); 9]).is_err());
        assert!(discount_ok(0).is_ok() && discount_ok(100).is_ok());
        assert!(discount_ok(-1).is_err() && discount_ok(101).is_err());
        assert!(min_charge_ok(-1).is_err() && min_charge_ok(0).is_ok());
    }
}
