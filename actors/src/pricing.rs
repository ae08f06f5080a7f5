//! The pricing engine (issue 16): rate plans by time of day, member groups and packages,
//! as pure functions. Nothing here touches storage or the clock; the session actor asks
//! it what each unit costs at the instant the unit begins.
//!
//! ## Rules (the contract of this module)
//!
//! - **Rate plan**: a weekly grid of 7 × 48 half-hour slots (Monday 00:00 first) holding
//!   fen per *minute*, read in the venue's time zone (`server.time_zone`), plus date
//!   overrides (a local date's own 48 slots, e.g. a holiday) and a minimum charge per
//!   session. A slot is looked up by the local wall time, so on a daylight-saving change
//!   the grid follows the clock on the wall.
//! - **A unit is priced by the rate in force at its start**, whatever happens during the
//!   unit: a unit beginning at 21:59 costs the 21:30 slot's rate even though it ends at
//!   22:00. A unit of `unit_ms` costs `rate × unit_ms / 60 000` rounded half up (the grid
//!   is per minute; with the default 60-second unit the unit price *is* the grid value).
//! - **A device without a plan** keeps its flat `charge_mode`, which is fen per unit
//!   exactly as before (no scaling), so flat devices bill byte-for-byte as they always did.
//! - **Member group**: a user is in at most one group. A group's own plan replaces the
//!   device's plan (on flat devices too); a group's discount `d` percent turns a unit
//!   price `p` into `(p × (100 − d) + 50) / 100` in integer arithmetic — rounded half up,
//!   per unit, after the plan lookup. Both may be set: the plan first, then the discount.
//! - **Minimum charge** (of the plan that priced the session's first unit): a session that
//!   is billed at all (past the free start) and whose first unit is paid with money costs
//!   at least the minimum. Prepaid, the first unit reserves `max(unit price, minimum)`,
//!   so the minimum is always covered by what was reserved and a refund is never negative.
//! - **Packages**: a held package has seconds left (bought minutes × 60), a validity
//!   (`valid_from ≤ t < expires_at`), the zones it may be used in (none = anywhere) and
//!   daily windows in local time (none = all day; `22:00–08:00` crosses midnight; a window
//!   whose start equals its end is the whole day). A unit is covered by ONE package, chosen
//!   among those applicable *at the unit's start* with at least a whole unit's seconds
//!   left: the one that expires first, ties broken by the lowest id. A covered unit costs
//!   no money and takes `unit_ms / 1000` seconds off the package; a unit is never split
//!   between a package and money. A unit starting at 07:59 in a 22:00–08:00 window is
//!   covered whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

/// Half-hour slots in a day.
pub const SLOTS_PER_DAY: usize = 48;
/// Slots in a week (Monday first).
pub const SLOTS_PER_WEEK: usize = 7 * SLOTS_PER_DAY;
/// The highest rate a plan may hold, in fen per minute (10,000 yuan an hour is plenty and
/// keeps every product far from overflow).
pub const MAX_RATE: i64 = 1_000_000;

/// A rate plan: fen per minute by local half-hour of the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatePlan {
    /// Database id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// `SLOTS_PER_WEEK` rates, Monday 00:00–00:30 first, fen per minute.
    pub week: Vec<i64>,
    /// Local dates with their own `SLOTS_PER_DAY` rates (holidays).
    pub overrides: BTreeMap<NaiveDate, Vec<i64>>,
    /// The least a billed session costs, in fen.
    pub min_charge: i64,
}

/// Why a plan (or a package window) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The weekly grid does not have 336 slots.
    #[error("the weekly grid must have {SLOTS_PER_WEEK} half-hour slots, got {0}")]
    WeekLength(usize),
    /// An override day does not have 48 slots.
    #[error("the override for {0} must have {SLOTS_PER_DAY} half-hour slots")]
    DayLength(NaiveDate),
    /// A rate is negative or absurdly high.
    #[error("rates must be between 0 and {MAX_RATE} fen per minute")]
    Rate,
    /// The minimum charge is negative or absurdly high.
    #[error("the minimum charge must be between 0 and {MAX_RATE} fen")]
    MinCharge,
    /// A discount is not a percentage.
    #[error("a discount is a whole percentage between 0 and 100")]
    Discount,
    /// A window's times are not minutes of a day.
    #[error("a window runs between two times of day (00:00–23:59)")]
    Window,
}

impl RatePlan {
    /// A plan with the same rate all week.
    pub fn flat(id: i64, rate: i64) -> Self {
        RatePlan {
            id,
            name: String::new(),
            week: vec![rate; SLOTS_PER_WEEK],
            overrides: BTreeMap::new(),
            min_charge: 0,
        }
    }

    /// Checks the shape and the ranges.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.week.len() != SLOTS_PER_WEEK {
            return Err(PlanError::WeekLength(self.week.len()));
        }
        let ok = |r: &i64| (0..=MAX_RATE).contains(r);
        if !self.week.iter().all(ok) {
            return Err(PlanError::Rate);
        }
        for (d, slots) in &self.overrides {
            if slots.len() != SLOTS_PER_DAY {
                return Err(PlanError::DayLength(*d));
            }
            if !slots.iter().all(ok) {
                return Err(PlanError::Rate);
            }
        }
        if !(0..=MAX_RATE).contains(&self.min_charge) {
            return Err(PlanError::MinCharge);
        }
        Ok(())
    }

    /// The rate (fen per minute) in force at the local date and half-hour slot.
    pub fn rate_local(&self, date: NaiveDate, weekday_from_monday: usize, slot: usize) -> i64 {
        if let Some(day) = self.overrides.get(&date) {
            return day.get(slot).copied().unwrap_or(0);
        }
        self.week
            .get(weekday_from_monday * SLOTS_PER_DAY + slot)
            .copied()
            .unwrap_or(0)
    }

    /// The rate (fen per minute) in force at the instant `at_ms` (unix ms) in `tz`.
    pub fn rate_at(&self, tz: Tz, at_ms: i64) -> i64 {
        let l = Local::of(tz, at_ms);
        self.rate_local(l.date, l.weekday, l.minute_of_day as usize / 30)
    }
}

/// An instant as the venue's wall clock shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Local date.
    pub date: NaiveDate,
    /// 0 = Monday.
    pub weekday: usize,
    /// Minutes since local midnight (0..1440).
    pub minute_of_day: u32,
}

impl Local {
    /// Converts by the zone's offset at that instant: the local wall time is the instant
    /// shifted by the offset, then split into days and minutes arithmetically (the
    /// reference model in the tests goes through chrono's calendar instead).
    pub fn of(tz: Tz, at_ms: i64) -> Local {
        let secs = at_ms.div_euclid(1000);
        let offset = match tz.timestamp_opt(secs, 0) {
            chrono::LocalResult::Single(t) => t.offset().fix().local_minus_utc() as i64,
            _ => 0,
        };
        let local = secs + offset;
        let days = local.div_euclid(86_400);
        let minute_of_day = (local.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (3 days after a Monday).
        let weekday = (days + 3).rem_euclid(7) as usize;
        let date =
            NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32).unwrap_or(NaiveDate::MIN);
        Local {
            date,
            weekday,
            minute_of_day,
        }
    }
}

/// The price of one unit of `unit_ms` at `rate` fen per minute, rounded half up.
pub fn unit_price(rate: i64, unit_ms: i64) -> i64 {
    (rate * unit_ms + 30_000) / 60_000
}

/// A unit price after a group discount of `pct` percent, rounded half up.
pub fn discounted(price: i64, pct: i64) -> i64 {
    let pct = pct.clamp(0, 100);
    (price * (100 - pct) + 50) / 100
}

/// A daily window in local time, in minutes since midnight: `[start, end)`, crossing
/// midnight when `end < start`, the whole day when `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, minutes since local midnight.
    pub start: u32,
    /// End (exclusive), minutes since local midnight.
    pub end: u32,
}

impl Window {
    /// Checks the times are minutes of a day.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.start < 1440 && self.end < 1440 {
            Ok(())
        } else {
            Err(PlanError::Window)
        }
    }

    /// Whether a local minute of the day falls inside.
    pub fn contains(&self, minute_of_day: u32) -> bool {
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => self.start <= minute_of_day && minute_of_day < self.end,
            std::cmp::Ordering::Greater => minute_of_day >= self.start || minute_of_day < self.end,
        }
    }

    /// Parses `HH:MM-HH:MM` (also with `–`).
    pub fn parse(s: &str) -> Option<Window> {
        let (a, b) = s.split_once('-').or_else(|| s.split_once('–'))?;
        let hm = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        Some(Window {
            start: hm(a)?,
            end: hm(b)?,
        })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// A package a user holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPackage {
    /// The user-package id (ties between packages expiring together go to the lowest).
    pub id: i64,
    /// Seconds of use left.
    pub seconds_left: i64,
    /// Usable from (unix ms).
    pub valid_from: i64,
    /// Usable until (unix ms, exclusive).
    pub expires_at: i64,
    /// Zones where it may be used; empty: any device.
    pub zones: Vec<i64>,
    /// Daily windows where it may be used; empty: all day.
    pub windows: Vec<Window>,
}

impl HeldPackage {
    /// Whether this package may cover a unit of `unit_ms` starting at `at_ms` on a device
    /// in `zone`.
    pub fn applies(&self, tz: Tz, zone: Option<i64>, at_ms: i64, unit_ms: i64) -> bool {
        self.seconds_left * 1000 >= unit_ms
            && self.valid_from <= at_ms
            && at_ms < self.expires_at
            && (self.zones.is_empty() || zone.is_some_and(|z| self.zones.contains(&z)))
            && (self.windows.is_empty() || {
                let m = Local::of(tz, at_ms).minute_of_day;
                self.windows.iter().any(|w| w.contains(m))
            })
    }
}

/// Picks the package that covers a unit starting at `at_ms`: among the applicable ones,
/// the one that expires first, ties to the lowest id. Returns its index in `held`.
pub fn choose_package(
    held: &[HeldPackage],
    tz: Tz,
    zone: Option<i64>,
    at_ms: i64,
    unit_ms: i64,
) -> Option<usize> {
    held.iter()
        .enumerate()
        .filter(|(_, p)| p.applies(tz, zone, at_ms, unit_ms))
        .min_by_key(|(_, p)| (p.expires_at, p.id))
        .map(|(i, _)| i)
}

/// How one unit is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Charge {
    /// Fen debited from the balance (or accrued, postpaid).
    Money(i64),
    /// Covered by the user package with this id (`unit_ms / 1000` seconds of it).
    Package(i64),
}

impl Charge {
    /// Fen this unit costs.
    pub fn money(self) -> i64 {
        match self {
            Charge::Money(m) => m,
            Charge::Package(_) => 0,
        }
    }
}

/// Everything needed to price the units of one session: who, where, under which plan.
/// The plan is shared (`Arc`) so that the whole fleet's sessions point at one copy and an
/// operator's change is picked up by each session at its next unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceContext {
    /// The venue's time zone.
    pub tz: Tz,
    /// Length of a unit.
    pub unit_ms: i64,
    /// The device's flat `charge_mode` (fen per unit), used when there is no plan.
    pub flat: i64,
    /// The plan in force: the user's group's own plan, else the device's (direct, else
    /// through its zone), else none.
    pub plan: Option<Arc<RatePlan>>,
    /// The user's group discount in percent (0: none).
    pub discount_pct: i64,
    /// The device's zone (for packages).
    pub zone: Option<i64>,
}

impl PriceContext {
    /// A device billed at its flat price, no group, no zone: exactly the old behaviour.
    pub fn flat(tz: Tz, unit_ms: i64, flat: i64) -> Self {
        PriceContext {
            tz,
            unit_ms,
            flat,
            plan: None,
            discount_pct: 0,
            zone: None,
        }
    }

    /// True when nothing but the flat price is involved.
    pub fn is_flat(&self) -> bool {
        self.plan.is_none() && self.discount_pct == 0
    }

    /// Fen for one unit beginning at `at_ms`, before packages.
    pub fn price_at(&self, at_ms: i64) -> i64 {
        let base = match &self.plan {
            Some(p) => unit_price(p.rate_at(self.tz, at_ms), self.unit_ms),
            None => self.flat,
        };
        if self.discount_pct == 0 {
            base
        } else {
            discounted(base, self.discount_pct)
        }
    }

    /// The minimum charge of the plan in force.
    pub fn min_charge(&self) -> i64 {
        self.plan.as_ref().map_or(0, |p| p.min_charge)
    }

    /// How a unit beginning at `at_ms` is paid, given the packages held: the unit's real
    /// price (the minimum charge is not in it; see `reservation`).
    pub fn charge_at(&self, at_ms: i64, held: &[HeldPackage]) -> Charge {
        if let Some(i) = choose_package(held, self.tz, self.zone, at_ms, self.unit_ms) {
            return Charge::Package(held[i].id);
        }
        Charge::Money(self.price_at(at_ms))
    }

    /// Fen to reserve for unit `unit` (1-based) paid as `charge`: its price, and for a
    /// first unit paid with money, whatever the minimum charge adds on top.
    pub fn reservation(&self, unit: i64, charge: Charge) -> i64 {
        match charge {
            Charge::Money(p) if unit == 1 => p.max(self.min_charge()),
            c => c.money(),
        }
    }

    /// How many more units `balance` pays for from `from_ms` on (units starting at
    /// `from_ms`, `from_ms + unit`, ...), at their real prices, packages first, looking at
    /// most `limit` units ahead. Free units (price 0, or covered) do not use up the
    /// balance; the count stops at `limit`.
    pub fn units_affordable(
        &self,
        first_unit: i64,
        from_ms: i64,
        balance: i64,
        held: &[HeldPackage],
        limit: i64,
    ) -> i64 {
        let mut held = held.to_vec();
        let mut left = balance.max(0);
        let mut n = 0;
        while n < limit {
            let unit = first_unit + n;
            let at = from_ms + n * self.unit_ms;
            match self.charge_at(at, &held) {
                Charge::Package(id) => consume(&mut held, id, self.unit_ms),
                c @ Charge::Money(_) => {
                    let m = self.reservation(unit, c);
                    if m > left {
                        break;
                    }
                    left -= m;
                }
            }
            n += 1;
        }
        n
    }
}

/// The venue's pricing as the actors hold it in memory: plans, zones, which device is in
/// which zone or on which plan, and the member groups. Sessions read it at each unit's
/// start (so an operator's change applies from the next unit on); the server replaces it
/// whole after every change. An empty catalog prices every device flat.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The venue's time zone.
    pub tz: Tz,
    /// Plans by id.
    pub plans: std::collections::HashMap<i64, Arc<RatePlan>>,
    /// Each zone's plan.
    pub zone_plans: std::collections::HashMap<i64, Option<i64>>,
    /// Each assigned device's zone and direct plan.
    pub devices: std::collections::HashMap<i64, (Option<i64>, Option<i64>)>,
    /// Each member group's discount percent and own plan.
    pub groups: std::collections::HashMap<i64, (i64, Option<i64>)>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            tz: chrono_tz::UTC,
            plans: Default::default(),
            zone_plans: Default::default(),
            devices: Default::default(),
            groups: Default::default(),
        }
    }
}

impl Catalog {
    /// The pricing of a unit on `device_id` (flat price `flat`) for a user in `group`:
    /// the group's own plan, else the device's direct plan, else its zone's, else flat.
    pub fn context(
        &self,
        device_id: i64,
        flat: i64,
        group: Option<i64>,
        unit_ms: i64,
    ) -> PriceContext {
        let (zone, direct) = self.devices.get(&device_id).copied().unwrap_or_default();
        let (discount_pct, group_plan) = group
            .and_then(|g| self.groups.get(&g).copied())
            .unwrap_or_default();
        let plan_id = group_plan
            .or(direct)
            .or_else(|| zone.and_then(|z| self.zone_plans.get(&z).copied().flatten()));
        PriceContext {
            tz: self.tz,
            unit_ms,
            flat,
            plan: plan_id.and_then(|id| self.plans.get(&id).cloned()),
            discount_pct,
            zone,
        }
    }
}

/// Takes one unit's seconds off the held package `id`.
pub fn consume(held: &mut [HeldPackage], id: i64, unit_ms: i64) {
    if let Some(p) = held.iter_mut().find(|p| p.id == id) {
        p.seconds_left -= unit_ms / 1000;
    }
}

/// Package time: seconds of one user package (taken for a unit, used, or given back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageTime {
    /// The user package (`user_packages.id`).
    pub user_package: i64,
    /// Seconds of it.
    pub seconds: i64,
}

/// The final account of a priced session: what it cost, the money refunded and the package
/// seconds given back, from how each reserved unit was paid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PricedSettlement {
    /// Units billed (0 within the free start).
    pub billed_units: i64,
    /// Fen the session costs.
    pub cost: i64,
    /// Reserved fen given back.
    pub refund: i64,
    /// Seconds given back to packages, by user-package id (ascending).
    pub package_returns: Vec<PackageTime>,
    /// Seconds of package use billed, by user-package id (ascending).
    pub package_used: Vec<PackageTime>,
}

/// What the minimum charge adds to the first unit's reservation.
pub fn min_topup(charges: &[Charge], min_charge: i64) -> i64 {
    match charges.first() {
        Some(Charge::Money(p)) => (min_charge - p).max(0),
        _ => 0,
    }
}

/// Settles a session whose reserved units were paid as `charges` (unit 1 first, real
/// prices) and that is billed for `billed_units` units (0 within the free start). The
/// first unit reserved the minimum charge on top of its price (`min_topup`); the bill is
/// the sum of the billed units' prices, floored at `min_charge` when unit 1 was paid
/// with money and something is billed. Reserved = Σ prices + top-up ≥ the bill, so the
/// refund is never negative.
pub fn settle_charges(
    charges: &[Charge],
    billed_units: i64,
    min_charge: i64,
    unit_ms: i64,
) -> PricedSettlement {
    let billed = (billed_units.max(0) as usize).min(charges.len());
    let reserved_money: i64 =
        charges.iter().map(|c| c.money()).sum::<i64>() + min_topup(charges, min_charge);
    let mut cost: i64 = charges[..billed].iter().map(|c| c.money()).sum();
    if billed > 0 && matches!(charges[0], Charge::Money(_)) {
        cost = cost.max(min_charge);
    }
    let secs = unit_ms / 1000;
    let tally = |cs: &[Charge]| {
        let mut m: BTreeMap<i64, i64> = BTreeMap::new();
        for c in cs {
            if let Charge::Package(id) = c {
                *m.entry(*id).or_default() += secs;
            }
        }
        m.into_iter()
            .map(|(user_package, seconds)| PackageTime {
                user_package,
                seconds,
            })
            .collect::<Vec<_>>()
    };
    PricedSettlement {
        billed_units: billed as i64,
        cost,
        refund: reserved_money - cost,
        package_returns: tally(&charges[billed..]),
        package_used: tally(&charges[..billed]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDateTime, Timelike, Weekday};
    use proptest::prelude::*;

    const MIN: i64 = 60_000;
    const SH: Tz = chrono_tz::Asia::Shanghai;

    fn at(s: &str) -> i64 {
        let n = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        SH.from_local_datetime(&n).unwrap().timestamp_millis()
    }

    /// Happy hour: 2 fen/min until 22:00, 5 fen/min from 22:00, every day.
    fn happy_hour() -> RatePlan {
        let mut p = RatePlan::flat(1, 2);
        for d in 0..7 {
            for s in 44..48 {
                p.week[d * SLOTS_PER_DAY + s] = 5;
            }
        }
        p
    }

    #[test]
    fn a_unit_is_priced_by_the_rate_at_its_start() {
        let ctx = PriceContext {
            plan: Some(Arc::new(happy_hour())),
            ..PriceContext::flat(SH, MIN, 99)
        };
        assert_eq!(ctx.price_at(at("2026-12-02 21:59:00")), 2);
        assert_eq!(ctx.price_at(at("2026-12-02 21:59:59")), 2);
        assert_eq!(ctx.price_at(at("2026-12-02 22:00:00")), 5);
        assert_eq!(ctx.price_at(at("2026-12-03 00:00:00")), 2);
    }

    #[test]
    fn overrides_replace_the_weekday_and_slots_follow_the_wall_clock() {
        let mut p = RatePlan::flat(1, 3);
        // Saturday night surcharge.
        p.week[5 * SLOTS_PER_DAY + 40] = 9;
        p.overrides
            .insert(NaiveDate::from_ymd_opt(2026, 12, 25).unwrap(), vec![1; 48]);
        p.validate().unwrap();
        // 2026-12-05 is a Saturday.
        assert_eq!(
            NaiveDate::from_ymd_opt(2026, 12, 5).unwrap().weekday(),
            Weekday::Sat
        );
        assert_eq!(p.rate_at(SH, at("2026-12-05 20:10:00")), 9);
        assert_eq!(p.rate_at(SH, at("2026-12-05 20:30:00")), 3);
        assert_eq!(p.rate_at(SH, at("2026-12-25 20:10:00")), 1);
        // In UTC the same instant is 12:10 — the grid is the venue's.
        assert_eq!(p.rate_at(chrono_tz::UTC, at("2026-12-05 20:10:00")), 3);
    }

    #[test]
    fn plans_are_validated() {
        let mut p = RatePlan::flat(1, 3);
        p.week.pop();
        assert_eq!(p.validate(), Err(PlanError::WeekLength(335)));
        let mut p = RatePlan::flat(1, 3);
        p.week[7] = -1;
        assert_eq!(p.validate(), Err(PlanError::Rate));
        let mut p = RatePlan::flat(1, 3);
        p.overrides
            .insert(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), vec![1; 47]);
        assert!(matches!(p.validate(), Err(PlanError::DayLength(_))));
    }

    #[test]
    fn unit_prices_scale_a_per_minute_rate_rounding_half_up() {
        assert_eq!(unit_price(7, 60_000), 7);
        assert_eq!(unit_price(7, 30_000), 4); // 3.5 → 4
        assert_eq!(unit_price(5, 6_000), 1); // 0.5 → 1
        assert_eq!(unit_price(4, 6_000), 0); // 0.4 → 0
        assert_eq!(unit_price(3, 120_000), 6);
    }

    #[test]
    fn discounts_round_half_up_per_unit() {
        assert_eq!(discounted(5, 10), 5); // 4.5 → 5
        assert_eq!(discounted(5, 30), 4); // 3.5 → 4
        assert_eq!(discounted(5, 31), 3); // 3.45 → 3
        assert_eq!(discounted(100, 100), 0);
        assert_eq!(discounted(100, 0), 100);
    }

    #[test]
    fn a_flat_context_is_the_charge_mode() {
        let ctx = PriceContext::flat(SH, 30_000, 5);
        assert!(ctx.is_flat());
        // Not scaled by the unit: charge_mode is fen per unit as it always was.
        assert_eq!(ctx.price_at(at("2026-12-02 22:00:00")), 5);
        assert_eq!(ctx.charge_at(0, &[]), Charge::Money(5));
    }

    #[test]
    fn windows_cross_midnight() {
        let w = Window::parse("22:00-08:00").unwrap();
        assert_eq!(w.to_string(), "22:00-08:00");
        assert!(w.contains(22 * 60));
        assert!(w.contains(0));
        assert!(w.contains(7 * 60 + 59));
        assert!(!w.contains(8 * 60));
        assert!(!w.contains(21 * 60 + 59));
        let day = Window::parse("10:00–12:00").unwrap();
        assert!(day.contains(600) && !day.contains(720));
        assert!(Window { start: 0, end: 0 }.contains(1000));
        assert!(Window::parse("24:00-01:00").is_none());
        assert!(Window::parse("nonsense").is_none());
    }

    fn overnight(id: i64, secs: i64, expires: &str) -> HeldPackage {
        HeldPackage {
            id,
            seconds_left: secs,
            valid_from: 0,
            expires_at: at(expires),
            zones: vec![],
            windows: vec![Window::parse("22:00-08:00").unwrap()],
        }
    }

    #[test]
    fn the_package_that_expires_first_covers_ties_to_the_lowest_id() {
        let ctx = PriceContext::flat(SH, MIN, 5);
        let held = vec![
            overnight(7, 600, "2027-01-01 00:00:00"),
            overnight(4, 600, "2026-12-10 00:00:00"),
            overnight(3, 600, "2026-12-10 00:00:00"),
        ];
        assert_eq!(
            ctx.charge_at(at("2026-12-02 23:00:00"), &held),
            Charge::Package(3)
        );
        // Outside the window: money.
        assert_eq!(
            ctx.charge_at(at("2026-12-02 12:00:00"), &held),
            Charge::Money(5)
        );
        // A unit starting at 07:59 is covered whole; at 08:00 it is not.
        assert_eq!(
            ctx.charge_at(at("2026-12-03 07:59:00"), &held),
            Charge::Package(3)
        );
        assert_eq!(
            ctx.charge_at(at("2026-12-03 08:00:00"), &held),
            Charge::Money(5)
        );
        // Less than a unit left: never split, money instead.
        let thin = vec![overnight(1, 59, "2027-01-01 00:00:00")];
        assert_eq!(
            ctx.charge_at(at("2026-12-02 23:00:00"), &thin),
            Charge::Money(5)
        );
    }

    #[test]
    fn zones_limit_packages() {
        let mut p = overnight(1, 600, "2027-01-01 00:00:00");
        p.zones = vec![2];
        p.windows.clear();
        let mut ctx = PriceContext::flat(SH, MIN, 5);
        assert_eq!(ctx.charge_at(0, &[p.clone()]), Charge::Money(5));
        ctx.zone = Some(3);
        assert_eq!(ctx.charge_at(0, &[p.clone()]), Charge::Money(5));
        ctx.zone = Some(2);
        assert_eq!(ctx.charge_at(0, &[p]), Charge::Package(1));
    }

    #[test]
    fn the_minimum_charge_floors_the_first_unit_and_the_bill() {
        let mut plan = RatePlan::flat(1, 5);
        plan.min_charge = 30;
        let ctx = PriceContext {
            plan: Some(Arc::new(plan)),
            ..PriceContext::flat(SH, MIN, 5)
        };
        assert_eq!(ctx.charge_at(0, &[]), Charge::Money(5));
        assert_eq!(ctx.reservation(1, Charge::Money(5)), 30);
        assert_eq!(ctx.reservation(2, Charge::Money(5)), 5);
        assert_eq!(ctx.reservation(1, Charge::Package(3)), 0);
        let charges = [Charge::Money(5), Charge::Money(5), Charge::Money(5)];
        assert_eq!(min_topup(&charges, 30), 25);
        // Two units billed: 10 < 30 → 30; reserved 40 → refund 10.
        let s = settle_charges(&charges, 2, 30, MIN);
        assert_eq!((s.cost, s.refund), (30, 10));
        // Within the free start: nothing.
        let s = settle_charges(&charges, 0, 30, MIN);
        assert_eq!((s.cost, s.refund), (0, 40));
        // Above the minimum: the sum of the unit prices.
        let many = vec![Charge::Money(5); 10];
        let s = settle_charges(&many, 8, 30, MIN);
        assert_eq!((s.cost, s.refund), (40, 35));
    }

    #[test]
    fn settlement_gives_unused_package_units_back() {
        let charges = [
            Charge::Money(5),
            Charge::Package(2),
            Charge::Package(2),
            Charge::Package(9),
        ];
        let s = settle_charges(&charges, 2, 0, MIN);
        assert_eq!(s.cost, 5);
        assert_eq!(s.refund, 0);
        let pt = |user_package, seconds| PackageTime {
            user_package,
            seconds,
        };
        assert_eq!(s.package_used, vec![pt(2, 60)]);
        assert_eq!(s.package_returns, vec![pt(2, 60), pt(9, 60)]);
    }

    #[test]
    fn affordable_units_follow_upcoming_prices_and_packages() {
        let ctx = PriceContext {
            plan: Some(Arc::new(happy_hour())),
            ..PriceContext::flat(SH, MIN, 99)
        };
        // From 21:58: 2, 2, then 5 each. Balance 10 → 2 + 2 + 5 = 9, a fourth needs 5.
        assert_eq!(
            ctx.units_affordable(2, at("2026-12-02 21:58:00"), 10, &[], 1000),
            3
        );
        let held = vec![overnight(1, 120, "2027-01-01 00:00:00")];
        // Two package units at 22:00 and 22:01 come free.
        assert_eq!(
            ctx.units_affordable(2, at("2026-12-02 21:58:00"), 10, &held, 1000),
            5
        );
        // Free plans stop at the limit.
        let free = PriceContext::flat(SH, MIN, 0);
        assert_eq!(free.units_affordable(1, 0, 0, &[], 50), 50);
    }

    // ----- reference model -----

    /// The rate by chrono's calendar: the local date-time of the instant, its weekday and
    /// its hour and minute.
    fn ref_rate(plan: &RatePlan, tz: Tz, at_ms: i64) -> i64 {
        let local = tz.timestamp_millis_opt(at_ms).unwrap().naive_local();
        let slot = (local.hour() * 2 + local.minute() / 30) as usize;
        match plan.overrides.get(&local.date()) {
            Some(day) => day[slot],
            None => plan.week[local.weekday().num_days_from_monday() as usize * 48 + slot],
        }
    }

    fn ref_in_windows(p: &HeldPackage, tz: Tz, at_ms: i64) -> bool {
        if p.windows.is_empty() {
            return true;
        }
        let local = tz.timestamp_millis_opt(at_ms).unwrap().naive_local();
        let m = local.hour() * 60 + local.minute();
        p.windows.iter().any(|w| {
            if w.start == w.end {
                true
            } else if w.start < w.end {
                (w.start..w.end).contains(&m)
            } else {
                !(w.end..w.start).contains(&m)
            }
        })
    }

    /// The reference session: for each unit in order, the applicable packages (zone,
    /// window, validity, a whole unit left) sorted by (expiry, id); the first covers it,
    /// else money at the reference rate with the discount.
    #[allow(clippy::too_many_arguments)]
    fn ref_session(
        plan: Option<&RatePlan>,
        flat: i64,
        disc: i64,
        zone: Option<i64>,
        tz: Tz,
        unit_ms: i64,
        start: i64,
        units: i64,
        held: &[HeldPackage],
    ) -> Vec<Charge> {
        let mut left: Vec<i64> = held.iter().map(|p| p.seconds_left).collect();
        let mut out = vec![];
        for u in 0..units {
            let t = start + u * unit_ms;
            let mut cands: Vec<usize> = (0..held.len())
                .filter(|&i| {
                    let p = &held[i];
                    left[i] * 1000 >= unit_ms
                        && p.valid_from <= t
                        && t < p.expires_at
                        && (p.zones.is_empty() || zone.is_some_and(|z| p.zones.contains(&z)))
                        && ref_in_windows(p, tz, t)
                })
                .collect();
            cands.sort_by_key(|&i| (held[i].expires_at, held[i].id));
            if let Some(&i) = cands.first() {
                left[i] -= unit_ms / 1000;
                out.push(Charge::Package(held[i].id));
                continue;
            }
            let base = match plan {
                Some(p) => {
                    let exact = ref_rate(p, tz, t) * unit_ms;
                    // half up
                    exact / 60_000 + i64::from(exact % 60_000 >= 30_000)
                }
                None => flat,
            };
            let num = base * (100 - disc);
            out.push(Charge::Money(num / 100 + i64::from(num % 100 >= 50)));
        }
        out
    }

    fn arb_plan() -> impl Strategy<Value = RatePlan> {
        (
            proptest::collection::vec(0i64..20, SLOTS_PER_WEEK),
            proptest::collection::vec((0u32..60, proptest::collection::vec(0i64..20, 48)), 0..3),
            0i64..50,
        )
            .prop_map(|(week, ov, min_charge)| RatePlan {
                id: 1,
                name: String::new(),
                week,
                overrides: ov
                    .into_iter()
                    .map(|(d, s)| {
                        (
                            NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
                                + chrono::Days::new(d as u64),
                            s,
                        )
                    })
                    .collect(),
                min_charge,
            })
    }

    fn arb_package() -> impl Strategy<Value = HeldPackage> {
        (
            1i64..6,
            0i64..40,
            // Whole days, so that packages often expire together (the tie-break matters).
            0i64..20,
            0i64..40,
            proptest::collection::vec(1i64..4, 0..2),
            proptest::collection::vec((0u32..1440, 0u32..1440), 0..2),
        )
            .prop_map(|(id, mins, from, len, zones, windows)| {
                let base = at("2026-11-20 00:00:00");
                HeldPackage {
                    id,
                    seconds_left: mins * 60,
                    valid_from: base + from * 86_400_000,
                    expires_at: base + (from + len) * 86_400_000,
                    zones,
                    windows: windows
                        .into_iter()
                        .map(|(start, end)| Window { start, end })
                        .collect(),
                }
            })
    }

    fn arb_tz() -> impl Strategy<Value = Tz> {
        prop_oneof![
            Just(chrono_tz::Asia::Shanghai),
            Just(chrono_tz::UTC),
            Just(chrono_tz::Europe::Berlin),
            Just(chrono_tz::America::St_Johns),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any plan, start, length and package set: the engine charges each unit exactly as
        /// the reference model does; a session's cost is the sum of its money units (with
        /// the minimum); packages are used only inside their windows, zones and validity
        /// and never beyond their seconds; settlement conserves money and seconds.
        #[test]
        fn engine_matches_the_reference_model(
            plan in proptest::option::of(arb_plan()),
            flat in 0i64..30,
            disc in prop_oneof![Just(0i64), 0i64..=100],
            zone in proptest::option::of(1i64..4),
            tz in arb_tz(),
            unit_s in prop_oneof![Just(60i64), 1i64..300],
            start_s in 0i64..30 * 86_400,
            units in 0i64..400,
            mut held in proptest::collection::vec(arb_package(), 0..4),
            billed_frac in 0i64..=100,
        ) {
            // User-package ids are unique.
            for (i, p) in held.iter_mut().enumerate() {
                p.id = p.id * 10 + i as i64;
            }
            let unit_ms = unit_s * 1000;
            let start = at("2026-11-15 00:00:00") + start_s * 1000 + 17;
            let ctx = PriceContext {
                tz,
                unit_ms,
                flat,
                plan: plan.clone().map(Arc::new),
                discount_pct: disc,
                zone,
            };
            let expect = ref_session(plan.as_ref(), flat, disc, zone, tz, unit_ms, start, units, &held);

            let mut live = held.clone();
            let mut got = vec![];
            for u in 0..units {
                let t = start + u * unit_ms;
                let c = ctx.charge_at(t, &live);
                if let Charge::Package(id) = c {
                    let p = live.iter().find(|p| p.id == id).unwrap();
                    // Never outside a window, a zone or the validity; never beyond its time.
                    prop_assert!(p.valid_from <= t && t < p.expires_at);
                    prop_assert!(p.zones.is_empty() || zone.is_some_and(|z| p.zones.contains(&z)));
                    prop_assert!(ref_in_windows(p, tz, t));
                    prop_assert!(p.seconds_left * 1000 >= unit_ms);
                    consume(&mut live, id, unit_ms);
                }
                got.push(c);
            }
            prop_assert_eq!(&got, &expect);
            for (p, q) in held.iter().zip(&live) {
                prop_assert!(q.seconds_left >= 0);
                prop_assert!(q.seconds_left <= p.seconds_left);
            }

            // Settlement: cost = sum of billed money units (floored by the minimum when
            // unit 1 is money), refund + cost = reserved money, package seconds used +
            // returned = seconds taken.
            let billed = units * billed_frac / 100;
            let min = plan.as_ref().map_or(0, |p| p.min_charge);
            let s = settle_charges(&got, billed, min, unit_ms);
            let topup = match got.first() { Some(Charge::Money(p)) => (min - p).max(0), _ => 0 };
            let reserved: i64 = got.iter().map(|c| c.money()).sum::<i64>() + topup;
            let mut cost: i64 = got[..billed as usize].iter().map(|c| c.money()).sum();
            if billed > 0 && matches!(got[0], Charge::Money(_)) {
                cost = cost.max(min);
            }
            prop_assert_eq!(s.cost, cost);
            prop_assert_eq!(s.cost + s.refund, reserved);
            prop_assert!(s.refund >= 0);
            let taken: i64 = held.iter().zip(&live).map(|(p, q)| p.seconds_left - q.seconds_left).sum();
            let back: i64 = s.package_returns.iter().chain(&s.package_used).map(|p| p.seconds).sum();
            prop_assert_eq!(taken, back);
        }

        /// The arithmetic local time agrees with chrono's calendar in any zone.
        #[test]
        fn local_time_matches_chrono(tz in arb_tz(), ms in -1_000_000_000_000i64..4_000_000_000_000) {
            let l = Local::of(tz, ms);
            let n = tz.timestamp_millis_opt(ms).unwrap().naive_local();
            prop_assert_eq!(l.date, n.date());
            prop_assert_eq!(l.weekday as u32, n.weekday().num_days_from_monday());
            prop_assert_eq!(l.minute_of_day, n.hour() * 60 + n.minute());
        }
    }
}
