//! Races: exactly one winner, and the money invariants hold whoever wins.

use crate::common;

use std::time::Duration;

use common::*;
use kioskd::store::Settle;
use kioskd_actors::ports::{LastHeard, StoreError};
use serde_json::json;

const A: &str = "11-22-33-44-55-66-77-01";
const B: &str = "11-22-33-44-55-66-77-02";
const FAST: &str = "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 5\n";

#[tokio::test]
async fn one_user_scanning_two_devices_at_once_gets_one_session() {
    let app = spawn_app("").await;
    app.add_device(A, 5).await;
    app.add_device(B, 5).await;
    let (phone, uid) = app.phone("oTwice", "17717460001", 1000).await;
    for round in 0..5 {
        app.check(A).await;
        app.check(B).await;
        let (a, b) = tokio::join!(phone.scan(A), phone.scan(B));
        let results = [a["result"].clone(), b["result"].clone()];
        let wins = results.iter().filter(|r| **r == json!("success")).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results.contains(&json!(-8)),
            "the loser is told it plays elsewhere: {results:?}"
        );
        let (_, sessions) = app.ops_get("/ops/sessions").await;
        assert_eq!(sessions["total"], 1);
        assert_eq!(phone.get("/windows/offline").await["result"]["status"], 1);
    }
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL AND user_id = $1")
            .bind(uid)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(active, 0);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn two_users_scanning_one_device_at_once_get_one_session() {
    let app = spawn_app("").await;
    app.add_device(A, 5).await;
    let (p1, _) = app.phone("oFirst", "17717460002", 1000).await;
    let (p2, _) = app.phone("oSecond", "17717460003", 1000).await;
    for round in 0..5 {
        app.check(A).await;
        let (a, b) = tokio::join!(p1.scan(A), p2.scan(A));
        let results = [a["result"].clone(), b["result"].clone()];
        assert_eq!(
            results.iter().filter(|r| **r == json!("success")).count(),
            1,
            "round {round}: {results:?}"
        );
        assert!(
            results.contains(&json!(-7)),
            "the loser is told the device is taken: {results:?}"
        );
        let token = app.token(A).await.unwrap();
        assert_eq!(
            app.kiosk("/windows/logout", json!({"token": token})).await["result"]["status"],
            1
        );
    }
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn logout_racing_billing_ticks_bills_each_started_unit_once() {
    let app = spawn_app(FAST).await;
    // Eight races at once, each on a device and user of its own (one after another they
    // took a unit each, ~8 s).
    let round = async |i: u64| {
        let code = format!("11-22-33-44-55-66-78-{i:02}");
        app.add_device(&code, 7).await;
        let (phone, uid) = app
            .phone(&format!("oRacer{i}"), &format!("177174610{i:02}"), 10_000)
            .await;
        app.check(&code).await;
        assert_eq!(phone.scan(&code).await["result"], "success");
        let token = app.token(&code).await.unwrap();
        // Land the logout around a unit boundary, where it races the tick (the wait is
        // the scenario: the boundary is a second after the start).
        tokio::time::sleep(Duration::from_millis(960 + i * 10)).await;
        let (out, _) = tokio::join!(
            app.kiosk("/windows/logout", json!({"token": token})),
            app.kiosk(
                "/windows/keepalive",
                json!({"token": token, "device_code": code})
            ),
        );
        assert_eq!(out["result"]["status"], 1, "round {i}: {out}");
        let (ended, reason, cost, billed, _, reserved) = app.last_session(uid).await;
        assert!(ended, "round {i}");
        assert_eq!(reason.as_deref(), Some("user_logout"), "round {i}");
        assert_eq!(
            cost,
            ((billed + 999) / 1000) * 7,
            "round {i}: cost follows ceil(billed/unit)*price"
        );
        assert!(
            reserved * 7 >= cost,
            "round {i}: never billed beyond what was reserved"
        );
        // Every debit row is unique by construction; the refunds make the sum exact.
        let spent: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(cost_money), 0) AS BIGINT) FROM sessions WHERE user_id = $1",
        )
        .bind(uid)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        assert_eq!(app.balance(uid).await, 10_000 - spent, "round {i}");
    };
    futures::future::join_all((0..8u64).map(round)).await;
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_recharge_notified_twice_concurrently_credits_once() {
    let app = spawn_app("").await;
    let (_phone, uid) = app.phone("oPay", "17717460005", 0).await;
    let now = 1_700_000_000_000;
    app.db
        .create_recharge(uid, 500, "wechatpay", "R-double", now)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let db = app.db.clone();
        tasks.push(tokio::spawn(async move {
            db.settle_recharge("R-double", "4200000001", 500, now)
                .await
                .unwrap()
        }));
    }
    let mut credited = 0;
    for t in tasks {
        match t.await.unwrap() {
            Settle::Credited { balance, .. } => {
                credited += 1;
                assert_eq!(balance, 500);
            }
            Settle::AlreadyCredited { user_id } => assert_eq!(user_id, uid),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(credited, 1);
    assert_eq!(app.balance(uid).await, 500);
    // Another transaction for the same order, a wrong amount, an unknown order: nothing.
    assert_eq!(
        app.db
            .settle_recharge("R-double", "4200000002", 500, now)
            .await
            .unwrap(),
        Settle::AlreadyPaidOtherwise
    );
    assert_eq!(
        app.db
            .settle_recharge("R-double", "4200000001", 499, now)
            .await
            .unwrap(),
        Settle::AmountMismatch
    );
    assert_eq!(
        app.db
            .settle_recharge("R-none", "4200000003", 500, now)
            .await
            .unwrap(),
        Settle::UnknownOrder
    );
    assert_eq!(app.balance(uid).await, 500);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn the_database_refuses_a_second_active_session_and_a_negative_balance() {
    let app = spawn_app("").await;
    app.add_device(A, 5).await;
    app.add_device(B, 5).await;
    let (phone, uid) = app.phone("oGuard", "17717460006", 100).await;
    app.check(A).await;
    assert_eq!(phone.scan(A).await["result"], "success");
    // Bypass the actors: the schema itself refuses what they would.
    let dup = sqlx::query(
        "INSERT INTO sessions (token, user_id, device_id, charge_mode, billing_mode, started_at, reserved_units, last_heard_at, utime)
         VALUES ('x', $1, 2, 5, 'prepaid', 0, 0, 0, 0)",
    )
    .bind(uid)
    .execute(app.db.pool())
    .await;
    assert!(
        dup.is_err(),
        "a second active session for one user is refused"
    );
    let neg = sqlx::query(
        "UPDATE users SET balance_account = -1, used_account = total_account + 1 WHERE id = $1",
    )
    .bind(uid)
    .execute(app.db.pool())
    .await;
    assert!(neg.is_err(), "a negative balance is refused");
    let skew = sqlx::query("UPDATE users SET balance_account = balance_account + 1 WHERE id = $1")
        .bind(uid)
        .execute(app.db.pool())
        .await;
    assert!(skew.is_err(), "balance must stay total - used");
    app.assert_invariants().await;
    app.stop().await;
}

/// The store's writes name the constraint that refused them, on both backends: a row
/// referring to a missing one is `Refused` (a foreign key), a taken key `Conflict`.
#[tokio::test]
async fn constraint_refusals_come_back_typed() {
    let app = spawn_app("").await;
    app.add_device(A, 5).await;
    assert_eq!(
        app.db
            .add_command(999_999, "restart", None, 1)
            .await
            .unwrap_err(),
        StoreError::Refused,
        "device_commands.device_id references devices"
    );
    app.db
        .add_terminal("FK1", "h", "t", "+0800", 1)
        .await
        .unwrap();
    assert_eq!(
        app.db
            .add_terminal("FK1", "h", "t", "+0800", 2)
            .await
            .unwrap_err(),
        StoreError::Conflict
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_commands")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn heartbeats_are_written_in_chunks_and_never_move_back() {
    let app = spawn_app("").await;
    app.add_device(A, 5).await;
    let (phone, _uid) = app.phone("oBeat", "17717460016", 100).await;
    app.check(A).await;
    assert_eq!(phone.scan(A).await["result"], "success");
    // More devices than one statement takes.
    for i in 0..600 {
        sqlx::query("INSERT INTO devices (code, name, charge_mode, billing_mode, ctime, utime) VALUES ($1, 'b', 5, 'prepaid', 0, 0)")
            .bind(format!("BE-AT-00-00-{:02X}-{:02X}", i / 256, i % 256))
            .execute(app.db.pool())
            .await
            .unwrap();
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM devices ORDER BY id")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    let sid: i64 = sqlx::query_scalar("SELECT id FROM sessions WHERE ended_at IS NULL")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let far = 9_000_000_000_000i64;
    let heard = |id: i64, at: i64| LastHeard { id, at };
    let beats: Vec<LastHeard> = ids.iter().map(|id| heard(*id, far + id)).collect();
    app.db
        .record_heartbeats(&beats, &[heard(sid, far)])
        .await
        .unwrap();
    // Older times change nothing.
    let old: Vec<LastHeard> = ids.iter().map(|id| heard(*id, far - 1)).collect();
    app.db
        .record_heartbeats(&old, &[heard(sid, far - 1)])
        .await
        .unwrap();
    let written: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE last_seen_at = $1 + id")
            .bind(far)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(written, ids.len() as i64);
    let heard: i64 = sqlx::query_scalar("SELECT last_heard_at FROM sessions WHERE id = $1")
        .bind(sid)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(heard, far);
    app.stop().await;
}
