//! Operators manage pricing through the ops API (issue 16 item 5) on the real application
//! (SQLite, or PostgreSQL with `KIOSKD_TEST_PG`): a plan created and assigned over HTTP
//! prices the next session's units, a group's discount applies, every change is in the
//! audit log, a viewer may read and not change, bad input changes nothing, a plan in use
//! is not deleted, a withdrawn package stays with its holder, and with Redis a change
//! made on one node reaches the other node's catalog.

use crate::common;

use std::time::Duration;

use common::*;
use kioskd_actors::pricing::{SLOTS_PER_DAY, SLOTS_PER_WEEK};
use serde_json::{Value, json};

const CODE: &str = "11-22-33-44-55-66-77-91";
const FAST: &str = "[billing]\nunit_seconds = 1\nfree_seconds = 0\n";

async fn ops(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path)).bearer_auth(OPS);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    ops(app, reqwest::Method::PUT, path, Some(body)).await
}

/// Prices (fen) of the reserved units of the user's latest session.
async fn unit_prices(app: &TestApp, user: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT su.price FROM session_units su JOIN sessions s ON s.id = su.session_id
         WHERE s.user_id = $1 AND s.id = (SELECT MAX(id) FROM sessions WHERE user_id = $1)
         ORDER BY su.unit",
    )
    .bind(user)
    .fetch_all(app.db.pool())
    .await
    .unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<(String, u16)> {
    let (st, v) = app.ops_get("/ops/audit?limit=500").await;
    assert_eq!(st, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["status"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_plan_made_over_the_api_prices_the_next_session_and_is_audited() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    // 600 fen a minute all week: 10 fen a one-second unit (the device's flat price is 5).
    let (st, plan) = app
        .ops_post(
            "/ops/pricing/plans",
            json!({"name": "VR peak", "week": vec![600; SLOTS_PER_WEEK], "min_charge": 0, "reason": "new VR prices"}),
        )
        .await;
    assert_eq!(st, 201, "{plan}");
    let plan_id = plan["id"].as_i64().unwrap();
    assert_eq!(plan["week"].as_array().unwrap().len(), SLOTS_PER_WEEK);
    let (st, zone) = app
        .ops_post(
            "/ops/pricing/zones",
            json!({"name": "VR", "plan_id": plan_id}),
        )
        .await;
    assert_eq!(st, 201, "{zone}");
    let zone_id = zone["id"].as_i64().unwrap();
    let (st, v) = put(
        &app,
        &format!("/ops/pricing/devices/{CODE}"),
        json!({"zone_id": zone_id, "plan_id": null}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // The node's catalog has it now, not at the next periodic reload.
    let cat = app.state.coord.pricing();
    assert!(cat.plans.contains_key(&plan_id));
    assert_eq!(cat.zone_plans.get(&zone_id), Some(&Some(plan_id)));
    let (_, zones) = app.ops_get("/ops/pricing/zones").await;
    assert_eq!(
        zones["data"][0]["devices"][0]["device_code"], CODE,
        "{zones}"
    );
    let (_, plans) = app.ops_get("/ops/pricing/plans").await;
    assert_eq!(plans["data"][0]["used_by"]["zones"], 1, "{plans}");

    let (phone, uid) = app.phone("oPlan", "17717463401", 1000).await;
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    wait_until(
        "three units reserved",
        Duration::from_secs(10),
        async || unit_prices(&app, uid).await.len() >= 3,
    )
    .await;
    let prices = unit_prices(&app, uid).await;
    assert!(
        prices.iter().all(|p| *p == 10),
        "plan price, not flat: {prices:?}"
    );

    // Every change is in the audit log under its route, with its status.
    let actions = audit_actions(&app).await;
    for want in [
        ("POST /ops/pricing/plans", 201),
        ("POST /ops/pricing/zones", 201),
        ("PUT /ops/pricing/devices/{code}", 200),
    ] {
        assert!(
            actions.iter().any(|(a, s)| a == want.0 && *s == want.1),
            "{want:?} not in {actions:?}"
        );
    }
    let (_, v) = app.ops_get("/ops/audit?limit=50").await;
    let create = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "POST /ops/pricing/plans")
        .unwrap()
        .clone();
    assert_eq!(create["reason"], "new VR prices", "{create}");
    assert_eq!(create["operator"], "service");
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_group_discount_applies_to_sessions_started_after_the_change() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    let (st, plan) = app
        .ops_post(
            "/ops/pricing/plans",
            json!({"name": "all week", "week": vec![600; SLOTS_PER_WEEK]}),
        )
        .await;
    assert_eq!(st, 201, "{plan}");
    let plan_id = plan["id"].as_i64().unwrap();
    let (st, v) = put(
        &app,
        &format!("/ops/pricing/devices/{CODE}"),
        json!({"zone_id": null, "plan_id": plan_id}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, g) = app
        .ops_post(
            "/ops/pricing/groups",
            json!({"name": "members", "discount_pct": 30}),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let (phone, uid) = app.phone("oGroup", "17717463402", 1000).await;
    let (_, u) = app.ops_get(&format!("/ops/users/{uid}")).await;
    assert_eq!(u["group_id"], Value::Null, "{u}");
    let (st, v) = put(
        &app,
        &format!("/ops/users/{uid}/group"),
        json!({"group_id": g["id"]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // The user's detail (the console's users page) names the group.
    let (_, u) = app.ops_get(&format!("/ops/users/{uid}")).await;
    assert_eq!(u["group_id"], g["id"], "{u}");
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    wait_until("two units reserved", Duration::from_secs(10), async || {
        unit_prices(&app, uid).await.len() >= 2
    })
    .await;
    // 10 fen less 30 %: 7.
    let prices = unit_prices(&app, uid).await;
    assert!(prices.iter().all(|p| *p == 7), "{prices:?}");
    app.assert_invariants().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_an_error_and_changes_nothing() {
    let app = spawn_app("").await;
    let week = vec![60; SLOTS_PER_WEEK];
    let (st, plan) = app
        .ops_post("/ops/pricing/plans", json!({"name": "base", "week": week}))
        .await;
    assert_eq!(st, 201, "{plan}");
    let id = plan["id"].as_i64().unwrap();
    let before = app.ops_get("/ops/pricing/plans").await.1;
    let mut negative = week.clone();
    negative[7] = -1;
    let cases: Vec<(reqwest::Method, String, Value)> = vec![
        (
            reqwest::Method::POST,
            "/ops/pricing/plans".into(),
            json!({"name": "short", "week": vec![60; SLOTS_PER_WEEK - 1]}),
        ),
        (
            reqwest::Method::POST,
            "/ops/pricing/plans".into(),
            json!({"name": "", "week": week}),
        ),
        (
            reqwest::Method::POST,
            "/ops/pricing/plans".into(),
            json!({"name": "x", "week": week, "colour": "red"}),
        ),
        (
            reqwest::Method::PUT,
            format!("/ops/pricing/plans/{id}"),
            json!({"week": negative}),
        ),
        (
            reqwest::Method::PUT,
            format!("/ops/pricing/plans/{id}"),
            json!({"week": vec![2_000_000; SLOTS_PER_WEEK]}),
        ),
        (
            reqwest::Method::PUT,
            format!("/ops/pricing/plans/{id}"),
            json!({"week": week, "min_charge": -5}),
        ),
        (
            reqwest::Method::PUT,
            format!("/ops/pricing/plans/{id}/days/2026-02-30"),
            json!({"slots": vec![60; SLOTS_PER_DAY]}),
        ),
        (
            reqwest::Method::PUT,
            format!("/ops/pricing/plans/{id}/days/2026-10-01"),
            json!({"slots": vec![60; 47]}),
        ),
        (
            reqwest::Method::POST,
            "/ops/pricing/groups".into(),
            json!({"name": "g", "discount_pct": 101}),
        ),
        (
            reqwest::Method::POST,
            "/ops/pricing/packages".into(),
            json!({"name": "p", "minutes": 60, "price": 100, "valid_days": 30, "windows": ["22:00"]}),
        ),
        (
            reqwest::Method::POST,
            "/ops/pricing/packages".into(),
            json!({"name": "p", "minutes": 0, "price": 100, "valid_days": 30}),
        ),
        (
            reqwest::Method::POST,
            "/ops/pricing/packages".into(),
            json!({"name": "p", "minutes": 60, "price": -1, "valid_days": 30}),
        ),
        (
            reqwest::Method::PUT,
            format!("/ops/pricing/devices/{CODE}"),
            json!({"zone_id": 1}),
        ),
    ];
    for (m, path, body) in cases {
        let (st, v) = ops(&app, m.clone(), &path, Some(body.clone())).await;
        assert!(
            (400..500).contains(&st) && v["error"].is_string(),
            "{m} {path} {body}: {st} {v}"
        );
    }
    assert_eq!(
        app.ops_get("/ops/pricing/plans").await.1,
        before,
        "nothing changed"
    );
    assert_eq!(app.ops_get("/ops/pricing/groups").await.1["total"], 0);
    assert_eq!(app.ops_get("/ops/pricing/packages").await.1["total"], 0);
    assert_eq!(
        app.state.coord.pricing().plans[&id].week,
        week,
        "the catalog in force is the plan as it was"
    );
    // A plan name is unique.
    let (st, v) = app
        .ops_post("/ops/pricing/plans", json!({"name": "base", "week": week}))
        .await;
    assert_eq!(st, 409, "{v}");
}

#[tokio::test]
async fn a_viewer_reads_pricing_and_is_refused_a_change() {
    let app = spawn_app("").await;
    let (st, v) = app
        .ops_post(
            "/ops/operators",
            json!({"username": "vera", "password": "vera-password", "role": "viewer", "sites": []}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = http
        .post(app.url("/ops/login"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"username": "vera", "password": "vera-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .get(app.url("/ops/pricing/plans"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "viewers read");
    let r = http
        .post(app.url("/ops/pricing/plans"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"name": "sneaky", "week": vec![0; SLOTS_PER_WEEK]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(app.ops_get("/ops/pricing/plans").await.1["total"], 0);
    let actions = audit_actions(&app).await;
    assert!(
        actions
            .iter()
            .any(|(a, s)| a == "POST /ops/pricing/plans" && *s == 403),
        "the refusal is audited too: {actions:?}"
    );
}

#[tokio::test]
async fn a_plan_in_use_is_not_deleted_and_a_withdrawn_package_stays_with_its_holder() {
    let app = spawn_app("").await;
    app.add_device(CODE, 5).await;
    let (_, plan) = app
        .ops_post(
            "/ops/pricing/plans",
            json!({"name": "p", "week": vec![60; SLOTS_PER_WEEK]}),
        )
        .await;
    let id = plan["id"].as_i64().unwrap();
    let (st, v) = put(
        &app,
        &format!("/ops/pricing/devices/{CODE}"),
        json!({"zone_id": null, "plan_id": id}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let path = format!("/ops/pricing/plans/{id}");
    let (st, v) = ops(&app, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("1 devices"), "{v}");
    assert!(app.state.coord.pricing().plans.contains_key(&id));
    put(
        &app,
        &format!("/ops/pricing/devices/{CODE}"),
        json!({"zone_id": null, "plan_id": null}),
    )
    .await;
    let (st, v) = ops(&app, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(st, 200, "{v}");
    assert!(
        !app.state.coord.pricing().plans.contains_key(&id),
        "reloaded"
    );
    assert_eq!(ops(&app, reqwest::Method::DELETE, &path, None).await.0, 404);

    // Date overrides.
    let (_, plan) = app
        .ops_post(
            "/ops/pricing/plans",
            json!({"name": "q", "week": vec![60; SLOTS_PER_WEEK]}),
        )
        .await;
    let q = plan["id"].as_i64().unwrap();
    let (st, v) = put(
        &app,
        &format!("/ops/pricing/plans/{q}/days/2026-10-01"),
        json!({"slots": vec![120; SLOTS_PER_DAY]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["overrides"]["2026-10-01"][0], 120, "{v}");
    let (st, v) = ops(
        &app,
        reqwest::Method::DELETE,
        &format!("/ops/pricing/plans/{q}/days/2026-10-01"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["overrides"], json!({}));

    // Packages: granted, withdrawn, still held; no more grants while withdrawn.
    let (_, uid) = app.phone("oPkg", "17717463403", 0).await;
    let (st, p) = app
        .ops_post(
            "/ops/pricing/packages",
            json!({"name": "night", "minutes": 120, "price": 1500, "windows": ["22:00-08:00"], "valid_days": 30}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["windows"][0], "22:00-08:00");
    let pkg = p["id"].as_i64().unwrap();
    let (st, v) = app
        .ops_post(
            &format!("/ops/users/{uid}/packages"),
            json!({"package_id": pkg, "reason": "apology"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = put(
        &app,
        &format!("/ops/pricing/packages/{pkg}"),
        json!({"on_sale": false}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (_, held) = app.ops_get(&format!("/ops/users/{uid}/packages")).await;
    assert_eq!(held["data"][0]["seconds_left"], 7200, "{held}");
    let (_, list) = app.ops_get("/ops/pricing/packages").await;
    assert_eq!(list["data"][0]["on_sale"], false);
    let (st, v) = app
        .ops_post(
            &format!("/ops/users/{uid}/packages"),
            json!({"package_id": pkg}),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    // Counted: the one grant, and a reload after each change (none failed).
    assert_eq!(
        app.metric("kioskd_pricing_packages_sold_total", r#"source="operator""#)
            .await,
        1.0
    );
    assert!(
        app.metric("kioskd_pricing_reloads_total", r#"outcome="ok""#)
            .await
            >= 3.0
    );
    assert_eq!(
        app.metric("kioskd_pricing_reloads_total", r#"outcome="error""#)
            .await,
        0.0
    );
    app.assert_invariants().await;
}

fn redis_url() -> String {
    std::env::var("KIOSKD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn a_change_on_one_node_reaches_the_other_nodes_catalog() {
    let ns = format!("kioskd-test-{}", kioskd_actors::ids::new_token());
    let layer = format!(
        "[redis]\nurl = \"{}\"\nlease_ms = 600\nnamespace = \"{ns}\"\n",
        redis_url()
    );
    let (tdb, url) = TestDb::new().await;
    let a = spawn_on(tdb, url.clone(), &layer).await;
    let b = spawn_on(TestDb::Sqlite(tempfile::tempdir().unwrap()), url, &layer).await;
    let (st, plan) = a
        .ops_post(
            "/ops/pricing/plans",
            json!({"name": "shared", "week": vec![90; SLOTS_PER_WEEK]}),
        )
        .await;
    assert_eq!(st, 201, "{plan}");
    let id = plan["id"].as_i64().unwrap();
    // Well within the 60 s backstop: the notice did it.
    wait_until(
        "node B reloads the new plan",
        Duration::from_secs(10),
        async || b.state.coord.pricing().plans.contains_key(&id),
    )
    .await;
    let (st, _) = put(
        &a,
        &format!("/ops/pricing/plans/{id}"),
        json!({"week": vec![150; SLOTS_PER_WEEK], "min_charge": 30}),
    )
    .await;
    assert_eq!(st, 200);
    wait_until(
        "node B has the new grid",
        Duration::from_secs(10),
        async || {
            b.state
                .coord
                .pricing()
                .plans
                .get(&id)
                .is_some_and(|p| p.week[0] == 150 && p.min_charge == 30)
        },
    )
    .await;
    b.stop().await;
    a.stop().await;
}

/// Runs `kioskd ops <args>` against the app with the shared token; (success, stdout,
/// stderr).
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kioskd"))
        .arg("ops")
        .args(["--server", &app.base])
        .args(args)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("kioskd-pricing-cli-none"),
        )
        .env("KIOSKD_OPS__TOKEN", OPS)
        .env("KIOSKD_LOG__FILTER", "error")
        .env_remove("KIOSKD_OPS_TOKEN")
        .env_remove("KIOSKD_OPS_SERVER")
        .kill_on_drop(true)
        .output()
        .await
        .expect("kioskd runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_manages_plans_zones_groups_and_packages() {
    let app = spawn_app("").await;
    app.add_device(CODE, 5).await;
    let dir = tempfile::tempdir().unwrap();
    // Evenings at 300 fen a minute, 7 lines of 48.
    let day = [vec!["60"; 36], vec!["300"; 12]].concat().join(" ");
    let grid = dir.path().join("week.txt");
    std::fs::write(&grid, vec![day; 7].join("\n")).unwrap();
    let g = grid.to_str().unwrap();
    let (ok, out, err) = cli(
        &app,
        &[
            "pricing",
            "create-plan",
            "--name",
            "evenings",
            "--grid",
            g,
            "--min-charge",
            "200",
            "--reason",
            "winter prices",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let (_, plans) = app.ops_get("/ops/pricing/plans").await;
    let id = plans["data"][0]["id"].as_i64().unwrap();
    assert_eq!(plans["data"][0]["week"][36], 300);
    assert_eq!(plans["data"][0]["min_charge"], 200);
    let (ok, out, _) = cli(&app, &["pricing", "plans"]).await;
    assert!(
        ok && out.contains("evenings") && out.contains("60/300"),
        "{out}"
    );
    let (ok, out, _) = cli(&app, &["pricing", "plan", &id.to_string()]).await;
    assert!(
        ok && out.contains("Sun  00:00-18:00 60 · 18:00-24:00 300"),
        "{out}"
    );

    // A bad grid file changes nothing.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "60 60 60").unwrap();
    let (ok, _, err) = cli(
        &app,
        &[
            "pricing",
            "set-grid",
            &id.to_string(),
            "--grid",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!ok && err.contains("336"), "{err}");
    assert_eq!(app.ops_get("/ops/pricing/plans").await.1, plans);

    let (ok, out, err) = cli(
        &app,
        &[
            "pricing",
            "create-zone",
            "--name",
            "VR",
            "--plan",
            &id.to_string(),
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let zone = app.ops_get("/ops/pricing/zones").await.1["data"][0]["id"]
        .as_i64()
        .unwrap();
    let (ok, out, err) = cli(
        &app,
        &["pricing", "assign", CODE, "--zone", &zone.to_string()],
    )
    .await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = cli(&app, &["pricing", "zones"]).await;
    assert!(ok && out.contains("VR") && out.contains(CODE), "{out}");
    assert_eq!(
        app.state.coord.pricing().devices.values().next(),
        Some(&(Some(zone), None))
    );

    let (ok, out, err) = cli(
        &app,
        &[
            "pricing",
            "create-group",
            "--name",
            "gold",
            "--discount",
            "20",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = cli(&app, &["pricing", "groups"]).await;
    assert!(ok && out.contains("gold") && out.contains("20"), "{out}");
    let (ok, _, err) = cli(
        &app,
        &[
            "pricing",
            "create-group",
            "--name",
            "bad",
            "--discount",
            "120",
        ],
    )
    .await;
    assert!(!ok && err.contains("discount"), "{err}");

    let (ok, out, err) = cli(
        &app,
        &[
            "pricing",
            "create-package",
            "--name",
            "night",
            "--minutes",
            "180",
            "--price",
            "2000",
            "--valid-days",
            "30",
            "--window",
            "22:00-08:00",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let pkg = app.ops_get("/ops/pricing/packages").await.1["data"][0]["id"]
        .as_i64()
        .unwrap();
    let (_, uid) = app.phone("oCli", "17717463404", 0).await;
    let (ok, out, err) = cli(
        &app,
        &[
            "pricing",
            "grant",
            &uid.to_string(),
            &pkg.to_string(),
            "--reason",
            "vip",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&app, &["pricing", "withdraw", &pkg.to_string()]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = cli(&app, &["pricing", "packages"]).await;
    assert!(
        ok && out.contains("night") && out.contains("22:00-08:00") && out.contains("false"),
        "{out}"
    );
    let (_, held) = app.ops_get(&format!("/ops/users/{uid}/packages")).await;
    assert_eq!(held["total"], 1, "withdrawn, still held: {held}");

    // Deleting the plan in use is refused with the reason.
    let (ok, _, err) = cli(&app, &["pricing", "delete-plan", &id.to_string()]).await;
    assert!(!ok && err.contains("in use"), "{err}");
    let (_, audit) = app.ops_get("/ops/audit?limit=100").await;
    let reasons: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"winter prices") && reasons.contains(&"vip"),
        "{reasons:?}"
    );
}
