//! Rate plans and packages on a real database (SQLite, or PostgreSQL with
//! `KIOSKD_TEST_PG`): the coordinator runs over `Db` with its wall clock pinned just
//! before 22:00 venue time and one-second units, so a price boundary, a package window's
//! end, a plan change and a restart all happen within seconds. Each test waits for the
//! units it needs by polling the database with a deadline, then checks every reserved
//! unit's recorded price against the rate in force at that unit's start, and the money
//! and package-time ledgers.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone};
use kioskd::store::{Db, NewDevice};
use kioskd_actors::coordinator::{Coordinator, CoordinatorConfig};
use kioskd_actors::ports::{BillingMode, UserRef};
use kioskd_actors::pricing::{SLOTS_PER_DAY, SLOTS_PER_WEEK, Window};
use kioskd_actors::{Clock, EndReason, Events};
use sqlx::Row;

const CODE: &str = "11-22-33-44-55-66-77-86";
const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;
const UNIT_MS: i64 = 1_000;

fn local(s: &str) -> i64 {
    let n = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.3f").unwrap();
    TZ.from_local_datetime(&n).unwrap().timestamp_millis()
}

/// 2.5 s before 22:00: units start at 21:59:57.5, 58.5, 59.5, then 22:00:00.5, ...
fn t0() -> i64 {
    local("2026-12-02 21:59:57.500")
}

fn boundary() -> i64 {
    local("2026-12-02 22:00:00.000")
}

/// Happy hour: 60 fen/min (1 fen a one-second unit) until 22:00, 300 fen/min (5 fen) after.
fn happy_hour_week() -> Vec<i64> {
    let mut w = vec![60; SLOTS_PER_WEEK];
    for d in 0..7 {
        for s in 44..48 {
            w[d * SLOTS_PER_DAY + s] = 300;
        }
    }
    w
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        unit_ms: UNIT_MS,
        free_ms: 500,
        heartbeat_timeout_ms: 600_000,
        ..CoordinatorConfig::default()
    }
}

struct Fixture {
    db: Db,
    _tdb: common::TestDb,
    device_id: i64,
    user_id: i64,
}

async fn fixture(balance: i64) -> Fixture {
    let (tdb, url) = common::TestDb::new().await;
    let db = Db::connect(&url, 4).await.unwrap();
    let d = db
        .add_device(
            &NewDevice {
                code: CODE.into(),
                client_id: None,
                name: "vr-1".into(),
                province: String::new(),
                city: String::new(),
                area: String::new(),
                location: String::new(),
                charge_mode: 3,
                billing_mode: BillingMode::Prepaid,
                secret: None,
                legacy_unsigned: None,
            },
            t0(),
        )
        .await
        .unwrap();
    let u = db.ensure_user("o-pricing", "", "", t0()).await.unwrap();
    db.adjust(u.id, balance, "test credit", "credit:1", t0())
        .await
        .unwrap();
    Fixture {
        db,
        _tdb: tdb,
        device_id: d.id,
        user_id: u.id,
    }
}

async fn coordinator(f: &Fixture, start_ms: i64) -> Coordinator {
    let coord = Coordinator::new(
        Arc::new(f.db.clone()),
        Clock::starting_at(start_ms),
        config(),
        Events::default(),
    );
    coord.set_pricing(f.db.pricing_catalog(TZ).await.unwrap());
    coord
}

async fn start(coord: &Coordinator, f: &Fixture) -> (i64, String) {
    coord.check(CODE).await.unwrap();
    let user = UserRef {
        id: f.user_id,
        openid: "o-pricing".into(),
        balance: kioskd_actors::ports::Store::user_balance(&f.db, f.user_id)
            .await
            .unwrap(),
    };
    let v = coord.start_session(CODE, user).await.unwrap().unwrap();
    (v.session_id, v.token)
}

/// (unit, price, debit, package) of every recorded unit.
async fn units(db: &Db, session: i64) -> Vec<(i64, i64, i64, Option<i64>)> {
    sqlx::query("SELECT unit, price, debit, user_package_id FROM session_units WHERE session_id = $1 ORDER BY unit")
        .bind(session)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Waits until `n` units are recorded (10 s at most).
async fn wait_units(db: &Db, session: i64, n: usize) -> Vec<(i64, i64, i64, Option<i64>)> {
    common::wait_until(
        "the units are recorded",
        Duration::from_secs(10),
        async || units(db, session).await.len() >= n,
    )
    .await;
    units(db, session).await
}

fn start_of(unit: i64) -> i64 {
    t0() + (unit - 1) * UNIT_MS
}

async fn ended_row(db: &Db, session: i64) -> (i64, i64) {
    let r = sqlx::query("SELECT cost_money, billed_ms FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_one(db.pool())
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

async fn assert_money_invariants(f: &Fixture, initial: i64, cost: i64) {
    let bal = kioskd_actors::ports::Store::user_balance(&f.db, f.user_id)
        .await
        .unwrap();
    assert_eq!(bal, initial - cost, "balance = initial - cost");
    assert_eq!(f.db.ledger_sum(f.user_id).await.unwrap(), bal);
    let u = f.db.user_by_id(f.user_id).await.unwrap().unwrap();
    assert_eq!(u.balance_account, u.total_account - u.used_account);
    assert!(u.balance_account >= 0);
}

async fn happy_hour_plan(f: &Fixture) -> i64 {
    let plan =
        f.db.add_plan("happy hour", &happy_hour_week(), 0, t0())
            .await
            .unwrap();
    let zone = f.db.add_zone("VR", Some(plan), t0()).await.unwrap();
    f.db.assign_device(f.device_id, Some(zone), None)
        .await
        .unwrap();
    plan
}

#[tokio::test]
async fn units_are_priced_at_their_start_across_the_22_00_boundary() {
    let f = fixture(1_000).await;
    happy_hour_plan(&f).await;
    let coord = coordinator(&f, t0()).await;
    let (sid, token) = start(&coord, &f).await;
    let u = wait_units(&f.db, sid, 5).await;
    assert!(u.len() >= 5, "units recorded: {u:?}");
    for &(unit, price, debit, pkg) in &u {
        let expect = if start_of(unit) < boundary() { 1 } else { 5 };
        assert_eq!((price, debit, pkg), (expect, expect, None), "unit {unit}");
    }
    // The kiosk sees the real price of the unit in progress.
    let v = coord.keepalive(&token, CODE).await.unwrap().unwrap();
    assert_eq!(v.charge_mode, 5);
    let ended = coord
        .end_by_token(&token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    let u = units(&f.db, sid).await;
    let (cost, billed_ms) = ended_row(&f.db, sid).await;
    let billed_units = (billed_ms + UNIT_MS - 1) / UNIT_MS;
    let expect: i64 = u.iter().filter(|x| x.0 <= billed_units).map(|x| x.1).sum();
    assert_eq!(cost, expect);
    assert_eq!(ended.cost, cost);
    let reserved: i64 = u.iter().map(|x| x.2).sum();
    assert_eq!(ended.refund, reserved - cost);
    assert_money_invariants(&f, 1_000, cost).await;
}

#[tokio::test]
async fn a_package_covers_units_inside_its_window_and_money_takes_over_after() {
    let f = fixture(1_000).await;
    happy_hour_plan(&f).await;
    // Usable 21:00–22:00 only.
    let pkg =
        f.db.add_package(
            "evening",
            10,
            0,
            &[],
            &[Window::parse("21:00-22:00").unwrap()],
            30,
            t0(),
        )
        .await
        .unwrap();
    let up =
        f.db.grant_package(f.user_id, pkg, t0())
            .await
            .unwrap()
            .unwrap();
    let coord = coordinator(&f, t0()).await;
    let (sid, token) = start(&coord, &f).await;
    let u = wait_units(&f.db, sid, 5).await;
    assert!(u.len() >= 5, "units recorded: {u:?}");
    for &(unit, price, debit, p) in &u {
        if start_of(unit) < boundary() {
            assert_eq!((price, debit, p), (0, 0, Some(up)), "unit {unit}");
        } else {
            assert_eq!((price, debit, p), (5, 5, None), "unit {unit}");
        }
    }
    let ended = coord
        .end_by_token(&token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    // Three units (21:59:57.5, 58.5, 59.5) were inside the window: 3 s used, all billed.
    let held = f.db.user_packages(f.user_id, boundary()).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].seconds_left, 600 - 3);
    assert_eq!(f.db.package_ledger_sum(up).await.unwrap(), 600 - 3);
    assert_money_invariants(&f, 1_000, ended.cost).await;
    assert_eq!(ended.cost % 5, 0, "only 5-fen units were paid with money");
}

#[tokio::test]
async fn a_plan_change_applies_to_units_that_begin_after_it() {
    let f = fixture(1_000).await;
    // Flat 60 fen/min (1 fen a unit) all week, on the device directly.
    let plan =
        f.db.add_plan("day", &vec![60; SLOTS_PER_WEEK], 0, t0())
            .await
            .unwrap();
    f.db.assign_device(f.device_id, None, Some(plan))
        .await
        .unwrap();
    let start_ms = local("2026-12-02 12:00:00.000");
    let coord = coordinator(&f, start_ms).await;
    let (sid, token) = start(&coord, &f).await;
    let before = wait_units(&f.db, sid, 2).await;
    assert!(before.iter().all(|u| u.1 == 1));
    f.db.update_plan(plan, &vec![600; SLOTS_PER_WEEK], 0, t0())
        .await
        .unwrap();
    coord.set_pricing(f.db.pricing_catalog(TZ).await.unwrap());
    let changed_after = units(&f.db, sid).await.len() as i64;
    let u = wait_units(&f.db, sid, changed_after as usize + 3).await;
    for &(unit, price, _, _) in &u {
        if unit <= changed_after {
            assert_eq!(price, 1, "unit {unit} was reserved before the change");
        } else if unit > changed_after + 1 {
            // (The unit right at the change may have been priced either side of it.)
            assert_eq!(price, 10, "unit {unit} began after the change");
        }
    }
    let ended = coord
        .end_by_token(&token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    let u = units(&f.db, sid).await;
    let reserved: i64 = u.iter().map(|x| x.2).sum();
    assert_eq!(ended.cost + ended.refund, reserved);
    assert_money_invariants(&f, 1_000, ended.cost).await;
}

#[tokio::test]
async fn a_session_restarted_mid_way_refunds_exactly_what_its_units_cost() {
    let f = fixture(1_000).await;
    let plan = happy_hour_plan(&f).await;
    let _ = plan;
    let coord = coordinator(&f, t0()).await;
    let (sid, _token) = start(&coord, &f).await;
    // Units at 1 fen (before 22:00) and at 5 fen after.
    let u = wait_units(&f.db, sid, 4).await;
    assert!(u.len() >= 4);
    coord.shutdown().await;
    let reserved_before: i64 = units(&f.db, sid).await.iter().map(|x| x.2).sum();
    // A new node recovers it from the database, its clock a moment later.
    let coord2 = coordinator(&f, t0() + units(&f.db, sid).await.len() as i64 * UNIT_MS).await;
    coord2.recover().await.unwrap();
    let n = units(&f.db, sid).await.len();
    let u = wait_units(&f.db, sid, n + 2).await;
    for &(unit, price, _, _) in &u {
        let expect = if start_of(unit) < boundary() { 1 } else { 5 };
        assert_eq!(price, expect, "unit {unit}");
    }
    let token = coord2
        .user_session(f.user_id)
        .await
        .unwrap()
        .expect("the session runs again")
        .token;
    let ended = coord2
        .end_by_token(&token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    let u = units(&f.db, sid).await;
    let reserved: i64 = u.iter().map(|x| x.2).sum();
    assert!(reserved >= reserved_before);
    let (cost, billed_ms) = ended_row(&f.db, sid).await;
    let billed_units = (billed_ms + UNIT_MS - 1) / UNIT_MS;
    let expect: i64 = u.iter().filter(|x| x.0 <= billed_units).map(|x| x.1).sum();
    assert_eq!(cost, expect);
    assert_eq!(ended.refund, reserved - cost);
    assert_money_invariants(&f, 1_000, cost).await;
}
