//! The console's read endpoints (`src/http/ops_console.rs`): user search, device detail,
//! alerts, and reports that must agree with the ledger to the fen.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sqlx::Row;

const CODE: &str = "11-22-33-44-55-66-77-A1";
const CODE2: &str = "11-22-33-44-55-66-77-A2";
const FAST: &str =
    "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 30\n";

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.ops_get(path).await
}

/// Waits (bounded) until the running session on the user has reserved `units`.
async fn wait_units(app: &TestApp, user: i64, units: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = app.last_session(user).await;
        if s.5 >= units {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {units} units reserved: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sums straight from the ledger, the way the reports must count them.
async fn ledger_sums(app: &TestApp) -> (i64, i64, i64) {
    let r = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN kind IN ('debit','refund') THEN -amount ELSE 0 END),0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN kind = 'recharge' THEN amount ELSE 0 END),0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN kind = 'adjust' THEN amount ELSE 0 END),0) AS BIGINT)
         FROM ledger",
    )
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    (
        r.try_get(0).unwrap(),
        r.try_get(1).unwrap(),
        r.try_get(2).unwrap(),
    )
}

#[tokio::test]
async fn reports_match_the_ledger_to_the_fen() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 7).await;
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": CODE2, "name": "=cmd,\"x\"", "charge_mode": 3, "location": "B2"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (phone, uid) = app.phone("oRep1", "17700000101", 1000).await;
    let (phone2, uid2) = app.phone("oRep2", "17700000102", 500).await;
    app.check(CODE).await;
    app.check(CODE2).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    assert_eq!(phone2.scan(CODE2).await["result"], "success");
    wait_units(&app, uid, 3).await;
    wait_units(&app, uid2, 2).await;
    // End the first by the operator (refunds what was reserved beyond now); leave the
    // second running.
    let (_, s) = get(&app, "/ops/sessions").await;
    let sid = s["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user_id"] == uid)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (st, v) = app
        .ops_post(
            &format!("/ops/sessions/{sid}/end"),
            json!({"reason": "report test"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let r = app
        .http
        .post(app.url(&format!("/ops/users/{uid}/adjust")))
        .bearer_auth(OPS)
        .header("Idempotency-Key", "report-test-1")
        .json(&json!({"amount": -25, "reason": "correction"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (st, rep) = get(&app, "/ops/reports").await;
    assert_eq!(st, 200, "{rep}");
    // The second session keeps reserving units: read the ledger around the report and
    // retry until both agree (a unit may land in between).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (rep, sums) = loop {
        let before = ledger_sums(&app).await;
        let (_, rep) = get(&app, "/ops/reports?by=day").await;
        let after = ledger_sums(&app).await;
        if before == after {
            break (rep, after);
        }
        assert!(tokio::time::Instant::now() < deadline);
    };
    let (consumption, recharges, adjustments) = sums;
    assert!(consumption > 0);
    assert_eq!(recharges, 1500);
    assert_eq!(adjustments, -25);
    let t = &rep["totals"];
    assert_eq!(t["consumption"], consumption, "{rep}");
    assert_eq!(t["recharges"], 1500);
    assert_eq!(t["adjustments"], -25);
    assert_eq!(t["sessions"], 2);
    assert_eq!(rep["data"].as_array().unwrap().len(), 1, "{rep}");
    assert_eq!(rep["data"][0]["consumption"], consumption);
    assert_eq!(rep["data"][0]["recharges"], 1500);
    let busy = t["busy_ms"].as_i64().unwrap();
    assert!(
        busy >= 3_000 && busy <= t["available_ms"].as_i64().unwrap(),
        "{rep}"
    );
    let util = t["utilisation"].as_f64().unwrap();
    assert!(util > 0.0 && util <= 1.0, "{rep}");

    // The ended session's consumption is exactly its final cost, on its device and site.
    let (_, _, cost1, _, _, _) = app.last_session(uid).await;
    assert!(cost1 >= 21, "3 units at 7 fen at least: {cost1}");
    let (st, dev) = get(&app, "/ops/reports?by=device").await;
    assert_eq!(st, 200, "{dev}");
    let row = |v: &Value, key: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no row {key} in {v}"))
    };
    let d1 = row(&dev, CODE);
    assert_eq!(d1["consumption"], cost1);
    assert_eq!(d1["sessions"], 1);
    assert_eq!(d1["name"], "seat");
    let (st, sites) = get(&app, "/ops/reports?by=site").await;
    assert_eq!(st, 200, "{sites}");
    assert_eq!(row(&sites, "A1")["consumption"], cost1);
    assert_eq!(row(&sites, "A1")["devices"], 1);
    assert_eq!(row(&sites, "B2")["sessions"], 1);

    // A period before anything happened is all zeros; a period of several days has a row
    // each.
    let (st, old) = get(&app, "/ops/reports?from=2020-01-01&to=2020-01-03").await;
    assert_eq!(st, 200, "{old}");
    assert_eq!(old["data"].as_array().unwrap().len(), 3);
    assert_eq!(old["totals"]["consumption"], 0);
    assert_eq!(old["totals"]["sessions"], 0);
    assert_eq!(old["totals"]["available_ms"], 0);

    // CSV: the same numbers, a download, cells that cannot run as formulas.
    let r = app
        .http
        .get(app.url("/ops/reports?by=device&format=csv"))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"kioskd-report-device-")
    );
    let body = r.text().await.unwrap();
    let body = body.trim_start_matches('\u{feff}');
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines[0],
        "device_code,name,sessions,busy_minutes,available_minutes,utilisation,consumption_fen"
    );
    let l1 = lines.iter().find(|l| l.starts_with(CODE)).unwrap();
    assert!(l1.ends_with(&format!(",{cost1}")), "{l1}");
    assert!(
        body.contains(&format!("{CODE2},\"'=cmd,\"\"x\"\"\"")),
        "{body}"
    );
    assert!(lines.last().unwrap().starts_with("合计,"));
    app.assert_invariants().await;
}

#[tokio::test]
async fn report_queries_refuse_bad_input() {
    let app = spawn_app("").await;
    for q in [
        "by=week",
        "from=2024-13-01",
        "from=yesterday",
        "from=2024-02-02&to=2024-02-01",
        "from=2024-01-01&to=2024-12-31&by=day",
        "from=2020-01-01&to=2024-01-01&by=site",
        "format=xml",
        "colour=red",
    ] {
        let (st, v) = get(&app, &format!("/ops/reports?{q}")).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert!(v["error"].is_string(), "{q}: {v}");
    }
    let (st, _) = get(&app, "/ops/reports?from=2024-01-01&to=2024-12-31&by=site").await;
    assert_eq!(st, 200);
    for path in [
        "/ops/users",
        "/ops/users?q=",
        "/ops/users?q=1&limit=0",
        "/ops/devices/not-a-code",
    ] {
        let (st, v) = get(&app, path).await;
        assert_eq!(st, 400, "{path}: {v}");
    }
    let (st, _) = get(&app, "/ops/devices/11-22-33-44-55-66-77-FF").await;
    assert_eq!(st, 404);
    let (st, _) = get(&app, "/ops/users/999/sessions").await;
    assert_eq!(st, 404);
    // Without the token nothing is read.
    for path in ["/ops/users?q=1", "/ops/alerts", "/ops/reports"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn users_are_found_by_mobile_openid_and_nickname_and_wildcards_are_literal() {
    let app = spawn_app("").await;
    let (_, a) = app.phone("oFindAlice", "17711112222", 0).await;
    let (_, b) = app.phone("oFindBob", "18833334444", 0).await;
    let ids = |v: &Value| -> Vec<i64> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_i64().unwrap())
            .collect()
    };
    let (st, v) = get(&app, "/ops/users?q=1771").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v), vec![a]);
    let (_, v) = get(&app, "/ops/users?q=oFindB").await;
    assert_eq!(ids(&v), vec![b]);
    // The dev sign-in names the user n<openid>.
    let (_, v) = get(&app, "/ops/users?q=FindAli").await;
    assert_eq!(ids(&v), vec![a]);
    assert_eq!(v["data"][0]["mobile"], "17711112222");
    assert_eq!(v["data"][0]["balance_account"], 0);
    let (_, v) = get(&app, "/ops/users?q=%25").await;
    assert_eq!(ids(&v), Vec::<i64>::new(), "% is not a wildcard");
    let (_, v) = get(&app, "/ops/users?q=_").await;
    assert_eq!(ids(&v), Vec::<i64>::new(), "_ is not a wildcard");
}

#[tokio::test]
async fn device_detail_shows_sessions_and_command_delivery_and_alerts_show_running_sessions() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oDev", "17700000201", 1000).await;
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    wait_units(&app, uid, 1).await;
    // A message to a kiosk without a WebSocket waits (pending).
    let (st, c) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name": "message", "text": "closing soon", "reason": "announce"}),
        )
        .await;
    assert_eq!(st, 202, "{c}");
    assert_eq!(c["delivered"], false);
    let (st, d) = get(&app, &format!("/ops/devices/{}", CODE.to_lowercase())).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["device"]["device_code"], CODE);
    assert_eq!(d["device"]["status"], "busy");
    assert_eq!(d["device"]["location"], "A1");
    assert_eq!(d["pending_commands"], 1);
    assert_eq!(d["commands"][0]["id"], c["id"]);
    assert_eq!(d["commands"][0]["name"], "message");
    assert_eq!(d["commands"][0]["acked_at"], Value::Null);
    assert_eq!(d["sessions"][0]["user_id"], uid);
    assert_eq!(d["sessions"][0]["ended_at"], Value::Null);
    let sid = d["sessions"][0]["id"].as_i64().unwrap();
    assert_eq!(d["session_id"], sid);
    // The audit log kept the command's reason.
    let (_, audit) = get(&app, &format!("/ops/audit?target={CODE}")).await;
    assert_eq!(audit["data"][0]["reason"], "announce", "{audit}");

    let (st, a) = get(&app, "/ops/alerts").await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["unit_ms"], 1000);
    assert_eq!(a["time_zone"], app.state.tz.name());
    let s = &a["sessions"][0];
    assert_eq!(s["id"], sid);
    assert_eq!(s["nick_name"], "noDev");
    assert_eq!(s["overdue_paid"], false);
    assert_eq!(s["overdue_heartbeat"], false);
    let left = s["time_left_ms"].as_i64().unwrap();
    assert!(left > 100_000 && left <= 200_000, "about 1000/5 units: {a}");
    assert!(s["paid_until"].as_i64().unwrap() > s["started_at"].as_i64().unwrap());
    assert_eq!(a["alerts"], json!([]), "nothing is wrong: {a}");

    let (st, us) = get(&app, &format!("/ops/users/{uid}/sessions")).await;
    assert_eq!(st, 200, "{us}");
    assert_eq!(us["data"][0]["id"], sid);
    assert_eq!(us["data"][0]["device_code"], CODE);
}

#[tokio::test]
async fn alerts_name_failed_outbox_sends_and_kiosks_gone_quiet() {
    let app = spawn_app("[billing]\nheartbeat_timeout_seconds = 1\n").await;
    app.add_device(CODE, 5).await;
    app.check(CODE).await;
    sqlx::query(
        "INSERT INTO outbox (kind, payload, status, attempts, next_attempt_at, last_error, created_at)
         VALUES ('prize_notice', '{}', 'failed', 8, 0, 'upstream said no', 0)",
    )
    .execute(app.db.pool())
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let a = loop {
        let (st, a) = get(&app, "/ops/alerts").await;
        assert_eq!(st, 200, "{a}");
        let kinds: Vec<&str> = a["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["kind"].as_str())
            .collect();
        if kinds.contains(&"device_offline") {
            break a;
        }
        assert!(tokio::time::Instant::now() < deadline, "{a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |k: &str| {
        a["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == k)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("device_offline")["target"], CODE);
    let o = find("outbox_failed");
    assert_eq!(o["count"], 1);
    assert_eq!(o["severity"], "critical");
    assert_eq!(o["detail"], "upstream said no");
    assert_eq!(a["devices_offline"], 1);
}
